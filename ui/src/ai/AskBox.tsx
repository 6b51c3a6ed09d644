import { useState } from "react";
import { ApiError } from "../api";
import { type AiStatus, type Suggestion, aiApi } from "./aiApi";

export const AI_OFF_NOTE = "AI assistance is off: an admin sets SQLBOOK_AI_URL (with SQLBOOK_AI_MODEL and, for a hosted model, SQLBOOK_AI_API_KEY) to turn it on. Schema hints and search work without it.";

interface AskBoxProps {
  status: AiStatus | null;
  /** The data source the question is about (its name, or "warehouse"). */
  datasource: string;
  /** The editor takes a checked suggestion (it is not run). */
  onSuggestion(suggestion: Suggestion, question: string): void;
  onError(err: unknown): ApiError;
}

/** "Ask": a question in words → a suggested SQL statement that fills the editor and its
 * parameter inputs. Off (disabled, with a note) until the operator configures a model. */
export function AskBox({ status, datasource, onSuggestion, onError }: AskBoxProps) {
  const [question, setQuestion] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<{ title: string; detail: string } | null>(null);
  const off = status !== null && !status.enabled;

  async function ask(e: React.FormEvent) {
    e.preventDefault();
    const text = question.trim();
    if (!text || busy || off) return;
    setBusy(true);
    setProblem(null);
    try {
      onSuggestion(await aiApi.suggest(text, datasource), text);
    } catch (err) {
      const error = onError(err);
      if (error.code === "ai_suggestion_refused") setProblem({ title: "No safe suggestion", detail: `${error.message} (checked twice; nothing was run)` });
      else if (error.code === "ai_disabled") setProblem({ title: "AI assistance is off", detail: error.message });
      else setProblem({ title: "The AI could not answer", detail: error.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="ask" role="search" aria-label="Ask AI" onSubmit={(e) => void ask(e)}>
      <input aria-label="Ask a question" placeholder={off ? "Ask (AI assistance is off)" : "Ask a question, e.g. refunds over 100 by week since January"} value={question} disabled={off || busy} onChange={(e) => setQuestion(e.target.value)} />
      <button type="submit" disabled={off || busy || !question.trim()}>
        {busy ? "Asking…" : "Ask"}
      </button>
      {status?.enabled && status.model && <small className="hint">{status.model}{status.send_samples ? " · sample values shared" : " · schema only"}</small>}
      {off && (
        <p className="hint ai-off" role="note">
          {AI_OFF_NOTE}
        </p>
      )}
      {problem && (
        <div className="error-box" role="alert">
          <strong>{problem.title}</strong>
          <pre>{problem.detail}</pre>
        </div>
      )}
    </form>
  );
}

/** What the editor shows about the suggestion it holds: the question, why this SQL, the
 * tables it reads, the parameters filled; Run runs it (and records it as accepted). */
export function SuggestionNote({ suggestion, question, runnable, onDismiss }: { suggestion: Suggestion; question: string; runnable: boolean; onDismiss(): void }) {
  return (
    <div className="suggestion" role="region" aria-label="Suggestion">
      <div className="suggestion-head">
        <strong>Suggested for “{question}”</strong>
        <button type="button" className="link" onClick={onDismiss} aria-label="dismiss the suggestion">
          ×
        </button>
      </div>
      {suggestion.explanation && <p className="explanation">{suggestion.explanation}</p>}
      <small className="hint">
        {suggestion.tables.length > 0 && <>Reads {suggestion.tables.join(", ")}. </>}
        {suggestion.parameters.length > 0 && <>Parameters: {suggestion.parameters.map((p) => p.name).join(", ")}. </>}
        Checked (parsed, read-only, EXPLAINed{suggestion.attempts > 1 ? " on the second try" : ""}) but not run: {runnable ? "press Run to run it." : "it uses a date range or an optional clause, so save it as an insight and run it there."}
      </small>
    </div>
  );
}
