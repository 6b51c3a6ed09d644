import { type Completion, type CompletionContext, type CompletionResult } from "@codemirror/autocomplete";
import { PostgreSQL, StandardSQL, type SQLNamespace, sql } from "@codemirror/lang-sql";
import { type Diagnostic, diagnosticCount, lintGutter, setDiagnostics } from "@codemirror/lint";
import { Compartment, EditorSelection, Prec } from "@codemirror/state";
import { EditorView, keymap, placeholder } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { forwardRef, useEffect, useImperativeHandle, useRef } from "react";
import type { SchemaTable } from "./api";
import { tablesMentioned } from "./sql";

export interface EditorHandle {
  /** What Ctrl/Cmd+Enter runs: the selection when there is one, else everything, and
   * where it starts in the document (error positions are relative to it). */
  runnable(): { sql: string; offset: number };
  text(): string;
  setText(text: string): void;
  insert(text: string): void;
  markError(from: number, to: number, message: string): void;
  clearError(): void;
  focus(): void;
}

interface Props {
  initial: string;
  tables: SchemaTable[];
  dialect: "postgres" | "clickhouse";
  onRun(): void;
  onChange(text: string): void;
}

function namespace(tables: SchemaTable[]): SQLNamespace {
  const out: Record<string, Record<string, string[]>> = {};
  for (const t of tables) {
    out[t.schema] ??= {};
    out[t.schema][t.name] = t.columns.map((c) => c.name);
  }
  return out as SQLNamespace;
}

/** Bare column names (without `table.`) of the tables the query mentions. */
function columnsOfMentionedTables(tables: SchemaTable[]) {
  return (context: CompletionContext): CompletionResult | null => {
    const word = context.matchBefore(/[\w$]+/);
    if (!word && !context.explicit) return null;
    if (word && context.state.sliceDoc(word.from - 1, word.from) === ".") return null;
    const options: Completion[] = [];
    for (const t of tablesMentioned(context.state.doc.toString(), tables)) {
      for (const c of t.columns) {
        options.push({ label: c.name, type: "property", detail: `${t.name} · ${c.type}`, boost: 1 });
      }
    }
    return options.length ? { from: word ? word.from : context.pos, options, validFor: /^[\w$]*$/ } : null;
  };
}

export const Editor = forwardRef<EditorHandle, Props>(function Editor(props, ref) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const language = useRef(new Compartment());
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    const run = () => {
      latest.current.onRun();
      return true;
    };
    const v = new EditorView({
      parent: host.current!,
      doc: props.initial,
      extensions: [
        Prec.highest(keymap.of([{ key: "Mod-Enter", run, preventDefault: true }])),
        basicSetup,
        lintGutter(),
        placeholder("select … from events  —  Ctrl/Cmd+Enter runs it"),
        language.current.of([]),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) {
            latest.current.onChange(u.state.doc.toString());
            // an error marker belongs to the text that failed; not inside this update
            if (diagnosticCount(u.state) > 0) {
              setTimeout(() => u.view.dispatch(setDiagnostics(u.view.state, [])), 0);
            }
          }
        }),
        EditorView.contentAttributes.of({ "aria-label": "SQL editor", "data-testid": "sql-editor" }),
      ],
    });
    view.current = v;
    return () => v.destroy();
    // the editor is created once; props reach it through `latest` and the compartment
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const lang = sql({
      dialect: props.dialect === "clickhouse" ? StandardSQL : PostgreSQL,
      schema: namespace(props.tables),
      defaultSchema: props.dialect === "clickhouse" ? undefined : "public",
    });
    v.dispatch({
      effects: language.current.reconfigure([
        lang,
        lang.language.data.of({ autocomplete: columnsOfMentionedTables(props.tables) }),
      ]),
    });
  }, [props.tables, props.dialect]);

  useImperativeHandle(ref, () => ({
    runnable() {
      const state = view.current!.state;
      const sel = state.selection.main;
      if (!sel.empty && state.sliceDoc(sel.from, sel.to).trim()) {
        return { sql: state.sliceDoc(sel.from, sel.to), offset: sel.from };
      }
      return { sql: state.doc.toString(), offset: 0 };
    },
    text: () => view.current!.state.doc.toString(),
    setText(text) {
      const v = view.current!;
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text } });
    },
    insert(text) {
      const v = view.current!;
      v.dispatch(v.state.replaceSelection(text));
      v.focus();
    },
    markError(from, to, message) {
      const v = view.current!;
      const diagnostics: Diagnostic[] = [{ from, to, severity: "error", message }];
      v.dispatch(setDiagnostics(v.state, diagnostics));
      v.dispatch({ selection: EditorSelection.cursor(from), scrollIntoView: true });
    },
    clearError() {
      const v = view.current!;
      v.dispatch(setDiagnostics(v.state, []));
    },
    focus: () => view.current!.focus(),
  }));

  return <div className="editor" ref={host} />;
});
