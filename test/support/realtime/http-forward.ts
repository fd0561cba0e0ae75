// Plain HTTP requests reaching the Realtime stand-in's own server can be passed on to another
// stand-in (e.g. the PostgREST one), so that one base URL serves /rest/v1 and /realtime/v1
// like a Supabase project URL does.
import http from 'node:http';

export function forwardTo(base: string): http.RequestListener {
  return (req, res) => {
    const target = new URL(req.url ?? '/', base);
    const upstream = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`realtime stand-in: forwarding to ${base} failed: ${err.message}`);
    });
    req.pipe(upstream);
  };
}
