import { debug } from './debug';

/** Count in-flight requests so tests can wait for the page to be idle. */
export async function track<T>(p: Promise<T>): Promise<T> {
  debug.pending++;
  try {
    return await p;
  } finally {
    debug.pending--;
  }
}
