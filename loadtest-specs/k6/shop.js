// A plain k6 script: herd runs it on every agent with that agent's share of the load.
// herd replaces `options` (VUs, duration, executors) with the spec's `load:`; the script keeps
// everything else. __ENV.HERD_TARGET is the spec's target URL; HERD_AGENT / HERD_AGENTS say
// which agent this is.
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = { vus: 1, duration: '10s' };

export default function () {
  const base = __ENV.HERD_TARGET;
  const home = http.get(`${base}/fast`, { tags: { name: 'home' } });
  check(home, { 'home is 200': (r) => r.status === 200 });
  const item = http.get(`${base}/items/${__VU}`, { tags: { name: 'item' } });
  check(item, { 'item is 200': (r) => r.status === 200 });
  sleep(0.01);
}
