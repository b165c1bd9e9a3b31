// The console builds into the Python package that serves it (sensormesh_console/dist), so an
// installed sensormesh (and its Docker image) carries it. `npm run dev` proxies the API to the
// local stack's Envoy on 8080.
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: "../sensormesh_console/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { "^/(v1|sensormesh\\.v1\\.)": "http://127.0.0.1:8080" },
  },
});
