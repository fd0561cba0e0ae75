/**
 * Appends `items` to `target` one by one. `target.push(...items)` passes
 * every item as an argument, and V8 throws "Maximum call stack size
 * exceeded" somewhere above 120,000 of them: one large source transaction
 * (a bulk UPDATE) would fail its batch for ever.
 */
export function append<T>(target: T[], items: readonly T[]): T[] {
  for (let i = 0; i < items.length; i += 1) target.push(items[i]!);
  return target;
}

/** `items` in the order `order` gives them; items it does not name keep their own order, after the others. */
export function inOrder(items: string[], order: string[]): string[] {
  const rank = (item: string) => {
    const i = order.indexOf(item);
    return i < 0 ? order.length : i;
  };
  return items.map((item, i) => ({ item, i })).sort((x, y) => rank(x.item) - rank(y.item) || x.i - y.i).map((x) => x.item);
}
