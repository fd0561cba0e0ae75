// The entry of the T-SQL parser bundle (see tsql-grammar.ts): parses a script, returns its syntax errors. Compiled
// only there, beside the parser antlr-ng generates from the grammars (tsconfig.json leaves it out: those are not here).
import { BaseErrorListener, CharStream, CommonTokenStream, PredictionMode, type ATNSimulator, type RecognitionException, type Recognizer, type Token } from 'antlr4ng';
// Generated into the bundle's build directory by antlr-ng from TSqlLexer.g4 and TSqlParser.g4.
import { TSqlLexer } from './TSqlLexer.js';
import { TSqlParser } from './TSqlParser.js';

class Errors extends BaseErrorListener {
  readonly found: string[] = [];
  override syntaxError<S extends Token, T extends ATNSimulator>(_r: Recognizer<T>, _s: S | null, line: number, column: number, message: string, _e: RecognitionException | null): void {
    this.found.push(`line ${line}:${column} ${message}`);
  }
}

function parse(text: string, mode: number): string[] {
  const errors = new Errors();
  const lexer = new TSqlLexer(CharStream.fromString(text));
  lexer.removeErrorListeners();
  lexer.addErrorListener(errors);
  const parser = new TSqlParser(new CommonTokenStream(lexer));
  parser.removeErrorListeners();
  parser.addErrorListener(errors);
  parser.interpreter.predictionMode = mode;
  parser.tsql_file();
  return errors.found;
}

/** SLL first (fast), full LL only when SLL reports an error: SLL may fail on input that LL accepts, never the reverse. */
export function syntaxErrors(text: string): string[] {
  const fast = parse(text, PredictionMode.SLL);
  return fast.length === 0 ? fast : parse(text, PredictionMode.LL);
}
