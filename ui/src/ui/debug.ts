// `window.__kilnDebug`: a hook for end-to-end tests (no pixel reading needed).

/** A node a flame graph drew, as the hook reports it. */
export interface RenderedNode {
  name: string;
  level: number;
  x: number;
  width: number;
  color: string;
  total: number;
  self: number;
  /** Diff graphs only. */
  diffPercent?: number;
  diffClass?: 'grew' | 'shrank' | 'same';
  leftTotal?: number;
  rightTotal?: number;
}

/** What the hook needs of a flame graph; `FlameGraph` implements it. */
export interface DebugGraph {
  renderedNodes(): RenderedNode[];
}

interface KilnDebug {
  /** Ids of live flame graphs (e.g. "single", "left", "right", "diff", "callers", "callees"). */
  graphs(): string[];
  /** Drawn nodes of a flame graph: name, color, x/width in px, totals, and for diffs the change class. */
  nodes(id: string): RenderedNode[];
  /** Number of API requests in flight; 0 when the page is idle. */
  pending: number;
  /** Increments each time a view finished rendering fresh data. */
  renders: number;
  lastRenderMs: Record<string, number>;
  state?: unknown;
}

const graphs = new Map<string, DebugGraph>();

export const debug: KilnDebug = {
  graphs: () => [...graphs.keys()],
  nodes: (id) => graphs.get(id)?.renderedNodes() ?? [],
  pending: 0,
  renders: 0,
  lastRenderMs: {},
};

(window as unknown as { __kilnDebug: KilnDebug }).__kilnDebug = debug;

export function registerGraph(id: string, g: DebugGraph): void {
  graphs.set(id, g);
}

export function unregisterGraph(id: string, g: DebugGraph): void {
  if (graphs.get(id) === g) graphs.delete(id);
}
