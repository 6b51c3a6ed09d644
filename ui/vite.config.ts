/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  build: {
    // api/ui_build.py reads the manifest to sum the initial JavaScript against its budget
    manifest: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    // `npm run dev` next to a running `sqlbook up`: the API and the login link on :8000
    proxy: { "/api": "http://127.0.0.1:8000", "/login": "http://127.0.0.1:8000" },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
