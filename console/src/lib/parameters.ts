/**
 * A command's parameters as typed into the console's form, checked against what the device
 * declared (CommandParameter in command_delivery.proto) before anything is sent: a person
 * sees which field is wrong at once, and the control service checks the same again.
 */
import type { JsonObject } from "@bufbuild/protobuf";

// CommandParameterType (command_delivery.proto).
export const STRING = 1;
export const NUMBER = 2;
export const INTEGER = 3;
export const BOOLEAN = 4;

export interface ParameterLike {
  name: string;
  type: number;
  required: boolean;
  allowedValues: readonly string[];
  minimum?: number;
  maximum?: number;
}

/** What a form control holds: text, a number input's number, or nothing yet. */
export type FormValue = string | number | null | undefined;

export type Checked =
  | { ok: true; parameters: JsonObject }
  | { ok: false; field: string; message: string };

/** The parameters to send, or the first field that is wrong and why. */
export function checkParameters(
  declared: readonly ParameterLike[],
  form: Readonly<Record<string, FormValue>>,
): Checked {
  const parameters: JsonObject = {};
  for (const p of declared) {
    const raw = form[p.name] == null ? "" : String(form[p.name]).trim();
    if (raw === "") {
      if (p.required) return { ok: false, field: p.name, message: `${p.name}: is required` };
      continue;
    }
    const value = typed(p, raw);
    if (typeof value === "object") return { ok: false, field: p.name, message: `${p.name}: ${value.problem}` };
    parameters[p.name] = value;
  }
  return { ok: true, parameters };
}

type Typed = string | number | boolean | { problem: string };

function typed(p: ParameterLike, raw: string): Typed {
  switch (p.type) {
    case BOOLEAN:
      return raw === "true" ? true : raw === "false" ? false : { problem: "must be true or false" };
    case NUMBER:
    case INTEGER:
      return number(p, raw);
    default:
      if (p.allowedValues.length && !p.allowedValues.includes(raw)) {
        return { problem: `must be one of ${p.allowedValues.join(", ")}` };
      }
      return raw;
  }
}

function number(p: ParameterLike, raw: string): Typed {
  const value = Number(raw);
  if (!Number.isFinite(value)) return { problem: "must be a number" };
  if (p.type === INTEGER && !Number.isInteger(value)) return { problem: "must be a whole number" };
  if (p.minimum !== undefined && value < p.minimum) return { problem: `must be at least ${p.minimum}` };
  if (p.maximum !== undefined && value > p.maximum) return { problem: `must be at most ${p.maximum}` };
  return value;
}
