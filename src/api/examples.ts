/** The example guests under guests/, served to the dashboard by `GET /api/examples`. */
import counter from "../../guests/counter.s";
import echo from "../../guests/echo.s";
import hello from "../../guests/hello.s";
import journal from "../../guests/journal.s";
import stress from "../../guests/stress.s";
import streamer from "../../guests/streamer.s";
import workload from "../../guests/workload.s";

export interface Example {
  name: string;
  /** The first comment line of the source: what the guest does. */
  title: string;
  source: string;
}

function example(name: string, source: string): Example {
  const first = source.split("\n")[0].replace(/^#\s*/, "");
  return { name, title: first.replace(/^\S+\s+—\s+/, ""), source };
}

export const EXAMPLES: Example[] = [
  example("hello", hello),
  example("counter", counter),
  example("echo", echo),
  example("journal", journal),
  example("stress", stress),
  example("streamer", streamer),
  example("workload", workload),
];
