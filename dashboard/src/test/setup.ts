import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterEach } from "vitest";

import { tokens } from "../api/client";

afterEach(() => {
  cleanup();
  tokens.clear();
  sessionStorage.clear();
});
