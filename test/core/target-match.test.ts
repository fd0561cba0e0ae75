import { describe, expect, it } from 'vitest';
import { matchTarget } from '../../src/core/target-match.js';

describe('matchTarget', () => {
  it('finds the table named like the source ignoring case, underscores and schemas', () => {
    expect(matchTarget('InvoiceLine', ['public.customers', 'public.invoice_line'], 'tables[0]')).toBe('public.invoice_line');
    expect(matchTarget('dbo.tblPatients', ['public.TBL_PATIENTS'], 'tables[1]')).toBe('public.TBL_PATIENTS');
    expect(matchTarget('public.invoice_line', ['InvoiceLine', 'Invoice'], 'tables[0]')).toBe('InvoiceLine');
  });

  it('refuses none and several, naming the key path and the candidates', () => {
    expect(() => matchTarget('InvoiceLine', ['public.invoices'], 'tables[2]')).toThrow(/^tables\[2\]\.target: no table of the sink database is named like InvoiceLine/);
    expect(() => matchTarget('InvoiceLine', ['public.invoice_line', 'billing.invoiceline'], 'tables[0]')).toThrow(
      /tables\[0\]\.target: several tables .* \(public\.invoice_line, billing\.invoiceline\); name the target table/,
    );
  });
});
