/** The guest list's pages: their sizes, and the cursor that says where the last one ended (opaque to clients). */
export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 500;

/** A cursor: where the last page ended, (createdAt, id), opaque to clients. */
export function encodeCursor(s: { createdAt: number; id: string }): string {
  return btoa(`${s.createdAt}.${s.id}`).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

export function decodeCursor(cursor: string): { createdAt: number; id: string } | null {
  try {
    const text = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
    const m = /^(\d{1,16})\.(g-[0-9a-f]{12})$/.exec(text);
    return m ? { createdAt: Number(m[1]), id: m[2] } : null;
  } catch {
    return null;
  }
}
