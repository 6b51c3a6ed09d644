import { useEffect, useState } from "react";
import { ApiError } from "../api";
import { type Answer, aiApi } from "./aiApi";

export interface AnswerQuestion {
  datasource: string;
  sql: string;
  parameters: Record<string, unknown>;
  suggestion_id?: string;
  /** The question the suggestion answered, so the summary speaks to it. */
  question?: string;
}

/** "Answer from data": the query the editor ran, run again read-only under the asker's
 * permissions, summarised with the numbers the summary rests on and the query it cites. */
export function AnswerPanel({ question, onError }: { question: AnswerQuestion | null; onError(err: unknown): ApiError }) {
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  // a new query in the editor: the last answer no longer belongs to it
  const key = question ? JSON.stringify(question) : "";
  useEffect(() => {
    setAnswer(null);
    setProblem(null);
  }, [key]);
  if (!question) return null;

  async function summarise() {
    if (!question) return;
    setBusy(true);
    setProblem(null);
    try {
      setAnswer(await aiApi.answer(question));
    } catch (err) {
      setProblem(onError(err).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="answer" aria-label="Answer">
      {!answer && (
        <button onClick={() => void summarise()} disabled={busy} title="run this query again read-only and have the AI summarise its result">
          {busy ? "Summarising…" : "Answer from data"}
        </button>
      )}
      {problem && (
        <div className="error-box" role="alert">
          <strong>No answer</strong>
          <pre>{problem}</pre>
        </div>
      )}
      {answer && (
        <div className="answer-body">
          <p className="answer-summary">{answer.summary}</p>
          {answer.numbers.length > 0 && (
            <dl className="answer-numbers" aria-label="Numbers">
              {answer.numbers.map((n, i) => (
                <div key={i}>
                  <dt>{n.label}</dt>
                  <dd>{typeof n.value === "number" ? n.value.toLocaleString() : n.value}</dd>
                </div>
              ))}
            </dl>
          )}
          <details className="answer-query">
            <summary>
              Based on this query ({answer.row_count.toLocaleString()} {answer.row_count === 1 ? "row" : "rows"})
            </summary>
            <pre>{answer.query.sql}</pre>
            {Object.keys(answer.query.parameters).length > 0 && (
              <ul>
                {Object.entries(answer.query.parameters).map(([name, value]) => (
                  <li key={name}>
                    <code>{name}</code> = <code>{JSON.stringify(value)}</code>
                  </li>
                ))}
              </ul>
            )}
          </details>
          <button className="link" onClick={() => setAnswer(null)}>
            Clear
          </button>
        </div>
      )}
    </section>
  );
}
