/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The dev server proxies the API so the dashboard stays same-origin, exactly as when the cloud serves it at `/`.
const api = process.env.IOTISTIC_API ?? "http://127.0.0.1:3002";

export default defineConfig({
  plugins: [react()],
  build: {
    // scripts/size.mjs reads the manifest to measure the initial JavaScript (entry chunk + its static imports).
    manifest: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      "/api": api,
      "/ws": { target: api.replace(/^http/, "ws"), ws: true },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    css: false,
    restoreMocks: true,
    // MUI in jsdom on shared CI cores is slow; a page test that clicks through menus needs more than 5 s.
    testTimeout: 20_000,
    unstubGlobals: true,
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
