import type { Value } from '../../core/change-event.js';
import { JsonText, jsonlessNumberText } from '../../core/json.js';

/** Type OIDs (pg_type) whose text form becomes a JS value (json and jsonb a JsonText); all others stay text, which PostgreSQL casts back losslessly. */
const BOOL = 16;
const BYTEA = 17;
const INT2 = 21;
const INT4 = 23;
const OID = 26;
const JSON_OID = 114;
const FLOAT4 = 700;
const FLOAT8 = 701;
const JSONB = 3802;

/** pgoutput sends column values in their text output form; int8 and numeric stay exact strings (as the pg pool reads them). */
export function fromText(typeOid: number, text: string): Value {
  switch (typeOid) {
    case BOOL:
      return text === 't';
    case INT2:
    case INT4:
    case OID:
      return Number(text);
    case FLOAT4:
    case FLOAT8: {
      // NaN, the infinities and -0 stay text: JSON has no number for them (see toFloat).
      const n = Number(text);
      return jsonlessNumberText(n) === undefined ? n : text;
    }
    case BYTEA:
      return text.startsWith('\\x') ? new Uint8Array(Buffer.from(text.slice(2), 'hex')) : text;
    case JSON_OID:
    case JSONB:
      // Exactly as written: parsed, jsonb's numbers lose digits and trailing zeros, json its own text.
      return new JsonText(text);
    default:
      return text;
  }
}
