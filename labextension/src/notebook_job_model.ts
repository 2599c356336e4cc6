/**
 * Notebook jobs' pure logic (unit-tested with jest): the defaults in a notebook's cell tagged
 * `parameters` (papermill's convention), values typed as Python or JSON literals, and where
 * a run's output notebook goes.
 */

export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

export const PARAMETERS_TAG = 'parameters';

/** What the parser needs of a cell (an nbformat cell or one of JupyterLab's cell models). */
export interface ICellSummary {
  cell_type: string;
  source: string | string[];
  metadata?: { tags?: unknown };
}

export interface IParameter {
  name: string;
  /** The value as the dialog first shows it: as written in the cell, on one line. */
  text: string;
  /** Its value; undefined when the cell computes it (an expression, not a literal). */
  value?: JSONValue;
}

/** The first code cell tagged `parameters` and the assignments it holds, or null when there is none. */
export function parametersCell(cells: ICellSummary[]): { index: number; parameters: IParameter[] } | null {
  const index = cells.findIndex(cell => {
    const tags = cell.metadata?.tags;
    return cell.cell_type === 'code' && Array.isArray(tags) && tags.includes(PARAMETERS_TAG);
  });
  if (index < 0) {
    return null;
  }
  const source = cells[index].source;
  return { index, parameters: parseParameters(Array.isArray(source) ? source.join('') : source) };
}

// `name =` or `name: annotation =` at the start of a line (not `==`); indented lines belong to blocks.
const ASSIGNMENT = /^([\p{L}_][\p{L}\p{N}_]*)[ \t]*(?::[^=\n]*)?=(?!=)[ \t]*/u;

/**
 * The top-level `name = value` statements of a parameters cell, in order (the last value of a
 * name assigned twice, as Python would leave it). A value that is not a literal is kept as
 * text, so the dialog can show it and leave it to the notebook unless the user replaces it.
 */
export function parseParameters(source: string): IParameter[] {
  const found = new Map<string, IParameter>();
  let pos = 0;
  while (pos < source.length) {
    const newline = source.indexOf('\n', pos);
    const lineEnd = newline < 0 ? source.length : newline;
    const line = source.slice(pos, lineEnd);
    const match = ASSIGNMENT.exec(line);
    let next = lineEnd + 1;
    if (match) {
      const name = match[1];
      const start = pos + match[0].length;
      const reader = new LiteralReader(source, start);
      try {
        const value = reader.value();
        const end = reader.pos;
        reader.statementEnd();
        const written = source.slice(start, end).trim();
        // An input holds one line: a value written over several is shown the Python way.
        found.set(name, { name, text: written.includes('\n') ? pythonLiteral(value) : written, value });
        next = reader.pos;
      } catch {
        found.set(name, { name, text: line.slice(match[0].length).trim() });
      }
    }
    pos = next;
  }
  return [...found.values()];
}

/** A Python or JSON literal typed by the user (or read from the cell) as a JSON value; throws with why not. */
export function parseLiteral(text: string): JSONValue {
  const reader = new LiteralReader(text, 0);
  reader.skipSpace(true);
  if (reader.pos >= text.length) {
    throw new Error('no value: type one, e.g. None');
  }
  try {
    const value = reader.value();
    reader.skipSpace(true);
    if (reader.pos < text.length) {
      throw new Error(`unexpected "${text.slice(reader.pos, reader.pos + 12)}" after the value`);
    }
    return value;
  } catch (error) {
    if (error instanceof InexactValue) {
      throw error;
    }
    const plain = text.trim();
    if (/^[^'"()[\]{}]+$/.test(plain)) {
      // Most likely text typed without its quotes (a name, a date, a path).
      throw new Error(`${plain} is not a value: text goes in quotes, e.g. ${pythonString(plain)}`);
    }
    throw error;
  }
}

/**
 * The parameters to send, from what the dialog's inputs hold (`texts`, by name): only the
 * values the user changed; the others keep the notebook's own line. `errors` tells, by name,
 * why a value was refused.
 */
export function readParameters(
  parameters: IParameter[],
  texts: Record<string, string>
): { values: Record<string, JSONValue>; errors: Record<string, string> } {
  const values: Record<string, JSONValue> = {};
  const errors: Record<string, string> = {};
  for (const parameter of parameters) {
    const text = texts[parameter.name] ?? parameter.text;
    if (text.trim() === parameter.text.trim()) {
      // Left as the notebook has it: its own line runs, exactly (2.0 stays a float, a
      // computed default is computed), rather than a JSON round trip of it.
      continue;
    }
    try {
      values[parameter.name] = parseLiteral(text);
    } catch (error) {
      errors[parameter.name] = (error as Error).message;
    }
  }
  return { values, errors };
}

/** `dir/stem.output-<first 8 of the job id>.ipynb`, next to the notebook. */
export function outputPath(notebookPath: string, jobId: string): string {
  const slash = notebookPath.lastIndexOf('/');
  const folder = notebookPath.slice(0, slash + 1);
  const file = notebookPath.slice(slash + 1);
  const stem = file.toLowerCase().endsWith('.ipynb') ? file.slice(0, -'.ipynb'.length) : file;
  return `${folder}${stem}.output-${jobId.slice(0, 8)}.ipynb`;
}

/** A JSON value written as Python would: 'text', True, None, [1, 2], {'a': 1}. */
export function pythonLiteral(value: JSONValue): string {
  if (value === null) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  if (typeof value === 'string') {
    return pythonString(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(pythonLiteral).join(', ')}]`;
  }
  return `{${Object.entries(value)
    .map(([key, item]) => `${pythonString(key)}: ${pythonLiteral(item)}`)
    .join(', ')}}`;
}

function pythonString(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text
    .replace(/\\/g, '\\\\')
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r')
    .replace(/\t/g, '\\t')
    .split(quote)
    .join(`\\${quote}`);
  return `${quote}${escaped}${quote}`;
}

// Python's constants, and JSON's spelling of them.
const CONSTANTS: Record<string, JSONValue> = {
  True: true, False: false, None: null, true: true, false: false, null: null
};
/** A value that parses but could not reach the notebook as it was typed. */
class InexactValue extends Error {}

const NUMBER = /[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?/y;
const WORD = /[\p{L}_][\p{L}\p{N}_]*/uy;
const ESCAPES: Record<string, string> = {
  '\n': '', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v'
};

/**
 * Reads one literal from `pos`: numbers, strings ('', "", triple-quoted, r''), True / False /
 * None (and JSON's true / false / null), lists, tuples (as lists) and dicts with string keys.
 * Inside brackets a value may span lines and hold comments, as in Python.
 */
class LiteralReader {
  constructor(
    readonly text: string,
    public pos: number
  ) {}

  value(): JSONValue {
    this.skipSpace(this.depth > 0);
    const char = this.text[this.pos];
    if (char === '[') {
      return this.sequence(']');
    }
    if (char === '(') {
      return this.parenthesised();
    }
    if (char === '{') {
      return this.dict();
    }
    if (char === '"' || char === "'") {
      return this.strings();
    }
    NUMBER.lastIndex = this.pos;
    const number = NUMBER.exec(this.text);
    if (number) {
      this.pos += number[0].length;
      const rest = /^[\p{L}\p{N}_.]*/u.exec(this.text.slice(this.pos))![0];
      if (rest) {
        throw new Error(`not a number: ${number[0]}${rest}`);
      }
      const value = Number(number[0].replace(/_/g, ''));
      if (/^[-+]?[0-9_]+$/.test(number[0]) && !Number.isSafeInteger(value)) {
        throw new InexactValue(`${number[0]} is too large to pass exactly (at most ${Number.MAX_SAFE_INTEGER}): pass it as text`);
      }
      return value;
    }
    WORD.lastIndex = this.pos;
    const word = WORD.exec(this.text);
    if (word) {
      const quote = this.text[this.pos + word[0].length];
      if ((quote === '"' || quote === "'") && /^[rRuU]$/.test(word[0])) {
        return this.strings();
      }
      if (word[0] in CONSTANTS) {
        this.pos += word[0].length;
        return CONSTANTS[word[0]];
      }
      if (quote === '"' || quote === "'") {
        throw new Error(`${word[0]}-strings are not plain values`);
      }
      throw new Error(`${word[0]} is not a value: use numbers, 'quoted text', True, False, None, [lists] or {dicts}`);
    }
    if (this.pos >= this.text.length) {
      throw new Error('the value ends too early');
    }
    throw new Error(`unexpected "${char}"`);
  }

  /** Spaces, and where Python allows (inside brackets) line breaks and comments. */
  skipSpace(acrossLines: boolean): void {
    for (;;) {
      const char = this.text[this.pos];
      if (char === ' ' || char === '\t' || (acrossLines && (char === '\n' || char === '\r'))) {
        this.pos++;
      } else if (char === '\\' && this.text[this.pos + 1] === '\n') {
        this.pos += 2; // an explicit line continuation
      } else if (acrossLines && char === '#') {
        const newline = this.text.indexOf('\n', this.pos);
        this.pos = newline < 0 ? this.text.length : newline;
      } else {
        return;
      }
    }
  }

  /** After a statement's value: a comment or nothing up to the end of the line (or `;`). */
  statementEnd(): void {
    this.skipSpace(false);
    if (this.text[this.pos] === '#') {
      const newline = this.text.indexOf('\n', this.pos);
      this.pos = newline < 0 ? this.text.length : newline;
    }
    const char = this.text[this.pos];
    if (char === undefined || char === '\n' || char === '\r' || char === ';') {
      this.pos = Math.max(this.pos, this.text.indexOf('\n', this.pos) + 1 || this.text.length);
      return;
    }
    throw new Error(`unexpected "${char}" after the value`);
  }

  private notAtEnd(): void {
    if (this.pos >= this.text.length) {
      throw new Error('the value ends too early');
    }
  }

  private sequence(close: string): JSONValue[] {
    this.pos++;
    this.depth++;
    const items: JSONValue[] = [];
    for (;;) {
      this.skipSpace(true);
      this.notAtEnd();
      if (this.text[this.pos] === close) {
        break;
      }
      items.push(this.value());
      this.skipSpace(true);
      this.notAtEnd();
      if (this.text[this.pos] === ',') {
        this.pos++;
      } else if (this.text[this.pos] !== close) {
        throw new Error(`expected "," or "${close}"`);
      }
    }
    this.pos++;
    this.depth--;
    return items;
  }

  /** `(x)` is x; `(x,)`, `(x, y)` and `()` are tuples, sent as lists. */
  private parenthesised(): JSONValue {
    const start = this.pos;
    this.pos++;
    this.depth++;
    this.skipSpace(true);
    if (this.text[this.pos] !== ')') {
      const inner = this.value();
      this.skipSpace(true);
      if (this.text[this.pos] === ')') {
        this.pos++;
        this.depth--;
        return inner;
      }
    }
    this.pos = start;
    this.depth--;
    return this.sequence(')');
  }

  private dict(): { [key: string]: JSONValue } {
    this.pos++;
    this.depth++;
    const entries: { [key: string]: JSONValue } = {};
    for (;;) {
      this.skipSpace(true);
      this.notAtEnd();
      if (this.text[this.pos] === '}') {
        break;
      }
      const key = this.value();
      if (typeof key !== 'string') {
        throw new Error('dict keys must be strings (a job takes JSON values)');
      }
      this.skipSpace(true);
      this.notAtEnd();
      if (this.text[this.pos] !== ':') {
        throw new Error('expected ":" after a dict key (sets are not JSON values)');
      }
      this.pos++;
      entries[key] = this.value();
      this.skipSpace(true);
      this.notAtEnd();
      if (this.text[this.pos] === ',') {
        this.pos++;
      } else if (this.text[this.pos] !== '}') {
        throw new Error('expected "," or "}"');
      }
    }
    this.pos++;
    this.depth--;
    return entries;
  }

  /** One string, or several written side by side ('a' 'b' is 'ab', as in Python). */
  private strings(): string {
    let text = this.string();
    for (;;) {
      const save = this.pos;
      this.skipSpace(this.depth > 0);
      const char = this.text[this.pos];
      const prefixed = /[rRuU]/.test(char ?? '') && /["']/.test(this.text[this.pos + 1] ?? '');
      if (char === '"' || char === "'" || prefixed) {
        text += this.string();
      } else {
        this.pos = save;
        return text;
      }
    }
  }

  private string(): string {
    let raw = false;
    if (/[rRuU]/.test(this.text[this.pos])) {
      raw = /[rR]/.test(this.text[this.pos]);
      this.pos++;
    }
    const quote = this.text[this.pos];
    const triple = this.text.startsWith(quote.repeat(3), this.pos);
    const close = triple ? quote.repeat(3) : quote;
    this.pos += close.length;
    let out = '';
    for (;;) {
      if (this.pos >= this.text.length) {
        throw new Error('a string is not closed');
      }
      if (this.text.startsWith(close, this.pos)) {
        this.pos += close.length;
        return out;
      }
      const char = this.text[this.pos];
      if (char === '\n' && !triple) {
        throw new Error('a string is not closed on its line');
      }
      if (char === '\\') {
        const next = this.text[this.pos + 1] ?? '';
        if (raw) {
          out += char + next; // a raw string keeps the backslash (and the quote it protects)
          this.pos += 2;
          continue;
        }
        out += this.escape(next);
        continue;
      }
      out += char;
      this.pos++;
    }
  }

  /** The character of `\x` at pos, pos moved past it. */
  private escape(next: string): string {
    if (next in ESCAPES) {
      this.pos += 2;
      return ESCAPES[next];
    }
    const width = next === 'x' ? 2 : next === 'u' ? 4 : next === 'U' ? 8 : 0;
    if (width) {
      const hex = this.text.slice(this.pos + 2, this.pos + 2 + width);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== width) {
        throw new Error(`a bad \\${next} escape`);
      }
      this.pos += 2 + width;
      return String.fromCodePoint(parseInt(hex, 16));
    }
    const octal = /^[0-7]{1,3}/.exec(this.text.slice(this.pos + 1));
    if (octal) {
      this.pos += 1 + octal[0].length;
      return String.fromCharCode(parseInt(octal[0], 8));
    }
    if (next === 'N') {
      throw new InexactValue('\\N{...} escapes are not supported here: type the character itself');
    }
    this.pos += 2;
    return '\\' + next; // Python keeps an unknown escape as written
  }

  private depth = 0;
}
