/**
 * `quantlab lab [--port 8080] [--host 127.0.0.1] [--no-isolation]`: serves the browser lab (web/, built by
 * `npm run build` into dist/web/) as static files. By default every response carries COOP/COEP (and CORP)
 * headers, which make the page cross-origin isolated: SharedArrayBuffer exists there and the kernels'
 * WebAssembly memory can be shared with worker threads. `--no-isolation` serves without them (the lab then
 * runs its kernels on one thread), for checking that fallback. Nothing is uploaded: the page reads the files
 * a person picks in the browser itself.
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { parseIntOpt } from "../util.js";

interface LabOptions {
  port: number;
  host: string;
  isolation: boolean;
  root?: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json",
};

/** The built lab beside the compiled CLI: dist/src/cli/commands → dist/web. */
function builtLab(): string {
  return fileURLToPath(new URL("../../../web", import.meta.url));
}

function handler(root: string, isolation: boolean) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const headers: Record<string, string> = { "cache-control": "no-cache", "x-content-type-options": "nosniff" };
    if (isolation) {
      headers["cross-origin-opener-policy"] = "same-origin";
      headers["cross-origin-embedder-policy"] = "require-corp";
      headers["cross-origin-resource-policy"] = "same-origin";
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, allow: "GET, HEAD" }).end();
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
    } catch {
      res.writeHead(400, headers).end("bad path");
      return;
    }
    if (path.endsWith("/")) path += "index.html";
    const file = resolve(root, normalize(`.${path}`));
    // nothing outside the lab's folder is served
    if (file !== root && !file.startsWith(root + sep)) {
      res.writeHead(403, headers).end("forbidden");
      return;
    }
    if (!existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { ...headers, "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { ...headers, "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": String(statSync(file).size) });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  };
}

export function register(program: Command): void {
  program
    .command("lab")
    .description("serve the browser lab (quantize, plot, compare and generate in a web page) on a local port")
    .option("--port <n>", "port (0 = any free port)", parseIntOpt("--port"), 8080)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("--no-isolation", "serve without COOP/COEP headers (the page is then not cross-origin isolated: one kernel thread)")
    .option("--root <dir>", "serve this folder instead of the built lab (dist/web)")
    .action(async (o: LabOptions) => {
      if (o.port < 0 || o.port > 65535) throw new QuantlabError("E_ARG", `option --port: ${o.port} is not a port number (0..65535)`);
      const root = resolve(o.root ?? builtLab());
      if (!existsSync(join(root, "index.html"))) throw new QuantlabError("E_IO", `${root}: no index.html — the lab is not built (run \`npm run build\`)`);
      const server = createServer(handler(root, o.isolation));
      await new Promise<void>((ok, fail) => {
        server.once("error", (e: NodeJS.ErrnoException) => fail(new QuantlabError("E_IO", `cannot listen on ${o.host}:${o.port} (${e.code ?? e.message})`)));
        server.listen(o.port, o.host, () => ok());
      });
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : o.port;
      const host = o.host.includes(":") ? `[${o.host}]` : o.host;
      process.stdout.write(`quantlab lab: http://${host}:${port}/ (${o.isolation ? "cross-origin isolated: COOP/COEP headers" : "not cross-origin isolated"}); Ctrl-C stops\n`);
      // serve until interrupted; the CLI's main() returns only when the server closes
      await new Promise<void>((done) => {
        const stop = () => {
          server.close(() => done());
          server.closeAllConnections(); // a browser's keep-alive connections would hold close() open
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    });
}
