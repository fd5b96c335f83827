import { act, render, screen } from "@testing-library/react";
import { useState } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { useFilterText } from "./DeviceFilterBar";

/** The hook behind a text box whose pushed value comes back later, as the URL's does on a slow machine. */
function Harness({ pushes }: { pushes: (string | undefined)[] }) {
  const [url, setUrl] = useState<string | undefined>(undefined);
  const [text, setText] = useFilterText(url, (v) => pushes.push(v));
  return (
    <>
      <input aria-label="search" value={text} onChange={(e) => setText(e.target.value)} />
      <button type="button" onClick={() => setUrl(pushes.at(-1))}>echo</button>
      <button type="button" onClick={() => setUrl(undefined)}>clear</button>
    </>
  );
}

function type(value: string) {
  const input = screen.getByLabelText("search") as HTMLInputElement;
  act(() => {
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value")!.set!;
    setter.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

describe("useFilterText", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("keeps what was typed while the pushed value comes back, and pushes once typing pauses", () => {
    const pushes: (string | undefined)[] = [];
    render(<Harness pushes={pushes} />);
    type("s");
    act(() => vi.advanceTimersByTime(300));
    expect(pushes).toEqual(["s"]);
    type("se"); // typed on before the echo of "s" arrives
    act(() => screen.getByRole("button", { name: "echo" }).click());
    expect(screen.getByLabelText("search")).toHaveValue("se");
    type("sens");
    act(() => vi.advanceTimersByTime(299));
    expect(pushes).toEqual(["s"]);
    act(() => vi.advanceTimersByTime(1));
    expect(pushes).toEqual(["s", "sens"]);
  });

  it("follows a change that did not come from here, and pushes a cleared box as no filter", () => {
    const pushes: (string | undefined)[] = [];
    render(<Harness pushes={pushes} />);
    type("roof");
    act(() => vi.advanceTimersByTime(300));
    act(() => screen.getByRole("button", { name: "echo" }).click());
    act(() => screen.getByRole("button", { name: "clear" }).click());
    expect(screen.getByLabelText("search")).toHaveValue("");
    act(() => vi.advanceTimersByTime(300));
    expect(pushes).toEqual(["roof"]); // the cleared URL is followed, not pushed back
    type("  ");
    act(() => vi.advanceTimersByTime(300));
    expect(pushes).toEqual(["roof"]); // blanks are no filter, and there is none already
  });
});
