// Driven by scripts/browser-test: a page on a second local port calls the
// API from Debian's chromium. From the listed origin, the preflighted POSTs
// and the websocket work; from another origin, the browser refuses both.
import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";

const require = createRequire(path.resolve("target/browser-test/package.json"));
const { chromium } = require("playwright-core");

const api = process.env.API;
const pagePort = Number(process.env.PAGE_PORT);

const page = `<!doctype html><html><head><meta charset="utf-8"><title>tickets</title></head>
<body><p>The site's own page.</p></body></html>`;
const site = http.createServer((_, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(page);
});
await new Promise((resolve) => site.listen(pagePort, "127.0.0.1", resolve));

// Runs in the page: what a web app of the site does.
async function fanSession(api) {
  const graphql = async (query, variables, token) => {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(`${api}/graphql`, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
    return response.json();
  };
  const user = await graphql('mutation { registerUser(name: "Browser fan") { id } }');
  const userId = user.data.registerUser.id;
  const issued = await graphql(
    "mutation($u: UUID!) { issueToken(userId: $u) { token status } }",
    { u: userId },
  );
  const token = issued.data.issueToken.token;
  const status = await graphql("{ queueStatus { status } }", {}, token);
  const live = await new Promise((resolve, reject) => {
    const socket = new WebSocket(`${api.replace("http", "ws")}/graphql/ws`, "graphql-transport-ws");
    socket.onerror = () => reject(new Error("the websocket failed"));
    socket.onopen = () =>
      socket.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        socket.send(JSON.stringify({
          id: "1",
          type: "subscribe",
          payload: { query: 'subscription { queueStatus(token: "") { status } }' },
        }));
      } else if (message.type === "next") {
        socket.close(1000);
        resolve(message.payload.data.queueStatus.status);
      }
    };
  });
  return { userId, issued: issued.data.issueToken.status, polled: status.data.queueStatus.status, live };
}

// Runs in a page of an origin that is not listed.
async function strangerSession(api) {
  let fetchRefused = false;
  try {
    await fetch(`${api}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer x" },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
  } catch (error) {
    fetchRefused = error instanceof TypeError;
  }
  const socketRefused = await new Promise((resolve) => {
    const socket = new WebSocket(`${api.replace("http", "ws")}/graphql/ws`, "graphql-transport-ws");
    socket.onopen = () => { socket.close(); resolve(false); };
    socket.onerror = () => resolve(true);
  });
  return { fetchRefused, socketRefused };
}

const failures = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${pagePort}/`);
  const fan = await tab.evaluate(fanSession, api);
  console.log("from the site's origin:", JSON.stringify(fan));
  if (!/^[0-9a-f-]{36}$/.test(fan.userId)) failures.push("registerUser from the site failed");
  if (!["ACTIVE", "WAITING"].includes(fan.polled)) failures.push("the polled status is missing");
  if (!["ACTIVE", "WAITING"].includes(fan.live)) failures.push("the websocket gave no status");

  // The same page under another origin: localhost is not 127.0.0.1.
  const stranger = await browser.newPage();
  await stranger.goto(`http://localhost:${pagePort}/`);
  const refused = await stranger.evaluate(strangerSession, api);
  console.log("from another origin:", JSON.stringify(refused));
  if (!refused.fetchRefused) failures.push("a page of another origin could read the API");
  if (!refused.socketRefused) failures.push("a page of another origin opened the websocket");
} finally {
  await browser.close();
  site.close();
}
if (failures.length > 0) {
  console.error("browser-test FAILED:", failures.join("; "));
  process.exit(1);
}
console.log("browser-test: ok");
