/**
 * Iterates `source` one item ahead: the next item is being produced while the caller works on
 * this one (reading and validating a chunk overlaps writing the previous one to Redis). An error
 * of the item read ahead surfaces when the caller gets to it.
 */
export async function* readAhead<T>(source: AsyncGenerator<T>): AsyncGenerator<T> {
  let next = source.next();
  try {
    for (;;) {
      const current = await next;
      if (current.done) return;
      next = source.next();
      // Not awaited until the caller is done with `current`: keep an early rejection from being unhandled.
      next.catch(() => undefined);
      yield current.value;
    }
  } finally {
    // The caller stopped early (an error, or a break): let the source close its files.
    await next.catch(() => undefined);
    await source.return(undefined);
  }
}
