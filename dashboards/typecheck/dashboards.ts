// Type-checks the generated dashboards against Grafana's own schema types (@grafana/schema).
// Run by check.sh (`tsc --noEmit`), which scripts/test calls.
import type { Dashboard } from '@grafana/schema';
import overview from '../overview.json' with { type: 'json' };
import session from '../session-example.json' with { type: 'json' };

// JSON imports have widened types (`"line"` is `string`), so Grafana's string enums and literal
// unions cannot be assigned as they are. `Widen` keeps the whole structure of `Dashboard` —
// every property's shape, every required field — and widens only literals to their base types.
type Widen<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends readonly (infer U)[]
        ? Widen<U>[]
        : T extends object
          ? { [K in keyof T]: Widen<T[K]> }
          : T;

export const structurallyValid: Array<Widen<Dashboard>> = [overview, session];
export const dashboards: Dashboard[] = [overview as Dashboard, session as Dashboard];
