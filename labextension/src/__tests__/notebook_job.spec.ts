import {
  ICellSummary, outputPath, parametersCell, parseLiteral, parseParameters, pythonLiteral, readParameters
} from '../notebook_job_model';

describe('parametersCell', () => {
  const code = (source: string, tags?: string[]): ICellSummary => ({
    cell_type: 'code', source, metadata: tags ? { tags } : {}
  });

  it('finds the first code cell tagged parameters', () => {
    const cells = [
      code('import os'),
      { cell_type: 'markdown', source: 'x = 1', metadata: { tags: ['parameters'] } },
      code("greeting = 'hi'\nn = 2\n", ['parameters', 'other']),
      code('n = 3', ['parameters'])
    ];
    expect(parametersCell(cells)).toEqual({
      index: 2,
      parameters: [
        { name: 'greeting', text: "'hi'", value: 'hi' },
        { name: 'n', text: '2', value: 2 }
      ]
    });
  });

  it('reads a source stored as a list of lines, as in an .ipynb file', () => {
    const cell = { cell_type: 'code', source: ['a = 1\n', 'b = [1,\n', '  2]\n'], metadata: { tags: ['parameters'] } };
    expect(parametersCell([cell])!.parameters.map(p => [p.name, p.value])).toEqual([['a', 1], ['b', [1, 2]]]);
  });

  it('is null without a tagged cell, or with tags that are not a list', () => {
    expect(parametersCell([code('x = 1'), code('y = 2', ['other'])])).toBeNull();
    expect(parametersCell([{ cell_type: 'code', source: 'x = 1', metadata: { tags: 'parameters' } }])).toBeNull();
  });
});

describe('parseParameters', () => {
  it('reads literals of every kind, with comments and annotations', () => {
    const source = [
      '# defaults for a run',
      "name = 'world'  # who to greet",
      'title = "Dr. \\"X\\""',
      'count: int = 10',
      'rate = -2.5e-3',
      'big = 1_000_000',
      'enabled = True',
      'dry_run = False',
      'limit = None',
      "tags = ['a', \"b\", 3]",
      "options = {'depth': 2, \"nested\": {'ok': True}, 'empty': []}",
      'pair = (1, 2)',
      'single = (7)',
      'raw = r"C:\\temp"',
      "joined = 'ab' 'cd'",
      "unicode = 'caf\\u00e9 \\n'",
      "héllo = '✓'"
    ].join('\n');
    const values: Record<string, unknown> = {};
    parseParameters(source).forEach(p => (values[p.name] = p.value));
    expect(values).toEqual({
      name: 'world',
      title: 'Dr. "X"',
      count: 10,
      rate: -0.0025,
      big: 1000000,
      enabled: true,
      dry_run: false,
      limit: null,
      tags: ['a', 'b', 3],
      options: { depth: 2, nested: { ok: true }, empty: [] },
      pair: [1, 2],
      single: 7,
      raw: 'C:\\temp',
      joined: 'abcd',
      unicode: 'café \n',
      héllo: '✓'
    });
  });

  it('keeps the text as written, without the comment', () => {
    expect(parseParameters("name = 'world'  # who\nn=2")).toEqual([
      { name: 'name', text: "'world'", value: 'world' },
      { name: 'n', text: '2', value: 2 }
    ]);
  });

  it('reads a value over several lines and shows it on one, the Python way', () => {
    const source = [
      'columns = [', "    'id',  # the key", "    'amount',", ']',
      'conf = {', "  'a': None,", "  'b': 'it''s'", '}',
      'after = 1', ''
    ].join('\n');
    expect(parseParameters(source)).toEqual([
      { name: 'columns', text: "['id', 'amount']", value: ['id', 'amount'] },
      { name: 'conf', text: "{'a': None, 'b': 'its'}", value: { a: null, b: 'its' } },
      { name: 'after', text: '1', value: 1 }
    ]);
  });

  it('keeps expressions as text with no value, and skips what is not an assignment', () => {
    const source = [
      'import os',
      "data_dir = os.environ.get('DATA', '/tmp')",
      'if True:',
      '    inside = 1',
      'a, b = 1, 2',
      'x == 3',
      'x += 1',
      'when = f"{data_dir}/x"',
      'items = 1, 2',
      'hexa = 0x10',
      'n = 2'
    ].join('\n');
    expect(parseParameters(source)).toEqual([
      { name: 'data_dir', text: "os.environ.get('DATA', '/tmp')" },
      { name: 'when', text: 'f"{data_dir}/x"' },
      { name: 'items', text: '1, 2' },
      { name: 'hexa', text: '0x10' },
      { name: 'n', text: '2', value: 2 }
    ]);
  });

  it('takes the last value of a name assigned twice, where it first appeared', () => {
    expect(parseParameters('a = 1\nb = 2\na = 3')).toEqual([
      { name: 'a', text: '3', value: 3 },
      { name: 'b', text: '2', value: 2 }
    ]);
  });

  it('reads Windows line ends', () => {
    expect(parseParameters("a = 'x'\r\nb = 2\r\n").map(p => p.value)).toEqual(['x', 2]);
  });
});

describe('parseLiteral', () => {
  it('takes Python and JSON spellings', () => {
    expect(parseLiteral('True')).toBe(true);
    expect(parseLiteral('false')).toBe(false);
    expect(parseLiteral(' None ')).toBeNull();
    expect(parseLiteral('null')).toBeNull();
    expect(parseLiteral('{"a": [1, 2.5, "x"], "b": null}')).toEqual({ a: [1, 2.5, 'x'], b: null });
    expect(parseLiteral("'it\\'s'")).toBe("it's");
    expect(parseLiteral('"""two\nlines"""')).toBe('two\nlines');
    expect(parseLiteral('[]')).toEqual([]);
    expect(parseLiteral('()')).toEqual([]);
    expect(parseLiteral('(1,)')).toEqual([1]);
    expect(parseLiteral('.5')).toBe(0.5);
    expect(parseLiteral('+3')).toBe(3);
  });

  it('refuses what is not a literal, saying why', () => {
    expect(() => parseLiteral('hello')).toThrow("hello is not a value: text goes in quotes, e.g. 'hello'");
    expect(() => parseLiteral('')).toThrow('no value');
    expect(() => parseLiteral("'open")).toThrow('a string is not closed');
    expect(() => parseLiteral('[1, 2')).toThrow('the value ends too early');
    expect(() => parseLiteral('2024-01-31')).toThrow(
      "2024-01-31 is not a value: text goes in quotes, e.g. '2024-01-31'"
    );
    expect(() => parseLiteral('[1] 2')).toThrow('unexpected "2" after the value');
    expect(() => parseLiteral('{1: 2}')).toThrow('dict keys must be strings');
    expect(() => parseLiteral('{1, 2}')).toThrow('dict keys must be strings');
    expect(() => parseLiteral("{'a', 'b'}")).toThrow('sets are not JSON values');
    expect(() => parseLiteral("f'{x}'")).toThrow('f-strings are not plain values');
    expect(() => parseLiteral('[0x1f]')).toThrow('not a number: 0x1f');
    expect(() => parseLiteral('os.getcwd()')).toThrow(
      "os is not a value: use numbers, 'quoted text', True, False, None, [lists] or {dicts}"
    );
  });
});

describe('readParameters', () => {
  const parameters = parseParameters("greeting = 'hi'\nn = 2\npath = os.getcwd()\n");

  it('sends only what the user changed: the notebook keeps its own lines for the rest', () => {
    expect(readParameters(parameters, { greeting: "'hello'" })).toEqual({
      values: { greeting: 'hello' },
      errors: {}
    });
    expect(readParameters(parameters, { greeting: "'hi'", n: '3', path: "'/data'" })).toEqual({
      values: { n: 3, path: '/data' },
      errors: {}
    });
  });

  it('refuses edited values it cannot pass exactly', () => {
    const typed = readParameters(parameters, { n: '12345678901234567891', greeting: "'\\N{EM DASH}'" });
    expect(typed.values).toEqual({});
    expect(typed.errors.n).toMatch(/too large to pass exactly/);
    expect(typed.errors.greeting).toMatch(/N\{\.\.\.\} escapes are not supported/);
  });

  it('leaves untouched defaults JSON cannot carry as they are', () => {
    const exact = parseParameters('ratio = 2.0\nbig = 12345678901234567891\npair = (1, 2)\n');
    expect(readParameters(exact, {})).toEqual({ values: {}, errors: {} });
  });

  it('tells which values it refuses', () => {
    expect(readParameters(parameters, { greeting: 'hello', n: '', path: 'os.getcwd() ' })).toEqual({
      values: {},
      errors: {
        greeting: "hello is not a value: text goes in quotes, e.g. 'hello'",
        n: 'no value: type one, e.g. None'
      }
    });
  });
});

describe('outputPath', () => {
  it('puts the output next to the notebook, named after it and the job', () => {
    expect(outputPath('pipeline.ipynb', '0123456789abcdef')).toBe('pipeline.output-01234567.ipynb');
    expect(outputPath('team/etl/daily.run.ipynb', 'abcdef0123')).toBe('team/etl/daily.run.output-abcdef01.ipynb');
    expect(outputPath('team/Report.IPYNB', 'abcdef0123')).toBe('team/Report.output-abcdef01.ipynb');
  });
});

describe('pythonLiteral', () => {
  it('writes values as Python does', () => {
    expect(pythonLiteral({ a: [1, 'x', true, null], "it's": 'say "hi"' })).toBe(
      "{'a': [1, 'x', True, None], \"it's\": 'say \"hi\"'}"
    );
    expect(pythonLiteral('back\\slash\n')).toBe("'back\\\\slash\\n'");
    expect(parseLiteral(pythonLiteral({ q: "both ' and \"" }))).toEqual({ q: "both ' and \"" });
  });
});
