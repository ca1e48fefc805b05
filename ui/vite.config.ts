import { defineConfig } from 'vitest/config';

// Relative asset paths so the bundle works when embedded into `kiln server` and served at `/`.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` proxies the API to a running kiln server (or the dev fixture server).
    proxy: {
      '/api': process.env.KILN_API ?? 'http://127.0.0.1:4040',
      '/pyroscope': process.env.KILN_API ?? 'http://127.0.0.1:4040',
      '/healthz': process.env.KILN_API ?? 'http://127.0.0.1:4040',
    },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
  },
});
