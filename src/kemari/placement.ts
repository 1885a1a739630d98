/**
 * Where a guest's hosts live: Durable Object location hints, one region for
 * the primary and a different one for the secondary, and the choice of a
 * fresh region for each re-protection.
 */
export const REGIONS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"] as const;
export type Region = (typeof REGIONS)[number];

export const DEFAULT_PRIMARY_REGION: Region = "weur";
export const DEFAULT_SECONDARY_REGION: Region = "enam";

/** A region for a new secondary: not the primary's, and not one that just failed, if any other is left. */
export function pickSecondaryRegion(primary: Region, avoid: readonly Region[] = []): Region {
  const fresh = REGIONS.find((r) => r !== primary && !avoid.includes(r));
  return fresh ?? REGIONS.find((r) => r !== primary)!;
}
