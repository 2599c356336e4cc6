import { formatBytes } from '../platform_model';
import {
  IObjectList, addInputs, appendPage, breadcrumbs, inputName, isNotConfigured, nameIn, objectPath
} from '../storage_model';

describe('breadcrumbs', () => {
  it('is the bucket alone at its root', () => {
    expect(breadcrumbs('data', '')).toEqual([{ label: 'data', prefix: '' }]);
  });

  it('has one crumb per folder of the prefix, each with its whole prefix', () => {
    expect(breadcrumbs('data', 'raw/2024/')).toEqual([
      { label: 'data', prefix: '' },
      { label: 'raw', prefix: 'raw/' },
      { label: '2024', prefix: 'raw/2024/' }
    ]);
  });
});

describe('names in a folder', () => {
  it('drops the prefix and a folder\'s trailing slash', () => {
    expect(nameIn('raw/', 'raw/2024/')).toBe('2024');
    expect(nameIn('raw/2024/', 'raw/2024/sales.csv')).toBe('sales.csv');
    expect(nameIn('', 'top.txt')).toBe('top.txt');
  });

  it('escapes each part of an object path but keeps the key\'s slashes', () => {
    expect(objectPath('data', 'raw/a b#1.csv')).toBe('data/raw/a%20b%231.csv');
  });
});

describe('object sizes', () => {
  it('reads in binary multiples', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MB');
  });
});

describe('job inputs from keys', () => {
  it('names an input by the key\'s last part', () => {
    expect(inputName('raw/2024/sales.csv')).toBe('sales.csv');
    expect(addInputs([], 'data', ['raw/sales.csv'])).toEqual([{ uri: 's3://data/raw/sales.csv', as: 'sales.csv' }]);
  });

  it('adds an object once, and falls back to the whole key when the name is taken', () => {
    const first = addInputs([], 'data', ['a/day.csv']);
    const second = addInputs(first, 'data', ['a/day.csv', 'b/day.csv']);
    expect(second).toEqual([
      { uri: 's3://data/a/day.csv', as: 'day.csv' },
      { uri: 's3://data/b/day.csv', as: 'b/day.csv' }
    ]);
    const third = addInputs(second, 'other', ['b/day.csv']);
    expect(third[2]).toEqual({ uri: 's3://other/b/day.csv', as: 'other/b/day.csv' });
  });
});

describe('pages', () => {
  const page = (folders: string[], keys: string[], next: string | null): IObjectList => ({
    bucket: 'data', prefix: '', delimiter: '/', folders,
    objects: keys.map(key => ({ key, size: 1 })), next_cursor: next
  });

  it('appends the next page without repeating a folder', () => {
    const both = appendPage(page(['a/'], ['x'], 'c1'), page(['a/', 'b/'], ['y'], null));
    expect(both.folders).toEqual(['a/', 'b/']);
    expect(both.objects.map(o => o.key)).toEqual(['x', 'y']);
    expect(both.next_cursor).toBeNull();
  });

  it('starts over for another folder', () => {
    const other = { ...page([], ['z'], null), prefix: 'raw/' };
    expect(appendPage(page(['a/'], ['x'], 'c1'), other)).toBe(other);
  });
});

describe('not configured', () => {
  it('is the 404 that says so, not any 404', () => {
    expect(isNotConfigured(404, 'object storage is not configured')).toBe(true);
    expect(isNotConfigured(404, 'NoSuchBucket: the bucket does not exist')).toBe(false);
    expect(isNotConfigured(502, 'object storage is not configured')).toBe(false);
  });
});
