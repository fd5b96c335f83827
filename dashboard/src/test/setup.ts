import "@testing-library/jest-dom/vitest";
import { cleanup, configure } from "@testing-library/react";
import { afterEach } from "vitest";

import { tokens } from "../api/client";

// findBy*/waitFor give up after 1 s by default; a lazy page rendering MUI in jsdom on shared CI cores can take
// longer than that without anything being wrong.
configure({ asyncUtilTimeout: 5_000 });

afterEach(() => {
  cleanup();
  tokens.clear();
  sessionStorage.clear();
});
