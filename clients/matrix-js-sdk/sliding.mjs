// matrix-js-sdk's SlidingSync client (Simplified Sliding Sync, MSC4186, the unstable path) against Parley.
// Usage: npm ci && node sliding.mjs http://127.0.0.1:8008   (the server needs open registration)
// Steps: two clients with the Rust crypto, both syncing only through SlidingSync (list window [0, 0] over
// their rooms, the to_device, e2ee, account_data, typing and receipts extensions the SDK registers). Two rooms;
// the window holds the most recent one; a message in the other moves it to the top of the window; an
// encrypted message decrypts on the other side (its room key came by the to_device extension, the device
// list and one-time keys by the e2ee extension); a to-device message arrives. Prints OK; exits 1 otherwise.
import {api, check, deadline, fail, log, quiet, register, step, until, base} from "./harness.mjs";
import * as sdk from "matrix-js-sdk";
import {SlidingSync, SlidingSyncEvent, SlidingSyncState} from "matrix-js-sdk/lib/sliding-sync.js";

deadline(60000);

const LIST = {ranges: [[0, 0]], timeline_limit: 5,
              required_state: [["m.room.name", ""], ["m.room.encryption", ""], ["m.room.create", ""],
                               ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]]};
const SUB = {timeline_limit: 20, required_state: [["*", "*"]]};

// Every response the client got: [{lists, rooms: {id: {lists, initial, timeline}}}].
async function start(r) {
  const c = sdk.createClient({baseUrl: base, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id, logger: quiet});
  await c.initRustCrypto({useIndexedDB: false});
  const ss = new SlidingSync(base, new Map([["all", LIST]]), SUB, c, 3000);
  const seen = [];
  ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
    if (err) console.log("  sliding sync error:", String(err));
    if (state === SlidingSyncState.Complete && resp) seen.push(resp);
  });
  const prepared = new Promise((res) => c.on(sdk.ClientEvent.Sync, (s) => { if (s === "PREPARED") res(); }));
  await c.startClient({slidingSync: ss});
  await Promise.race([prepared, new Promise((_, rej) => setTimeout(() => rej(new Error("no PREPARED sync in 20 s")), 20000))]);
  return {c, ss, seen};
}
// The room the "all" list's window [0, 0] holds now: the last response's room that is in the list.
function top(seen) {
  for (let i = seen.length - 1; i >= 0; i--) {
    for (const [id, room] of Object.entries(seen[i].rooms ?? {})) if ((room.lists ?? []).includes("all")) return id;
  }
  return undefined;
}

const suffix = Math.random().toString(36).slice(2, 8);
const [a, b] = await step("register alice and bob", () => Promise.all([register("jssa" + suffix), register("jssb" + suffix)]));
// Rooms first (over plain HTTP), so the first sliding sync has something to order.
const [plain, secret] = await step("alice makes a plain and an encrypted room, bob joins both", async () => {
  const r1 = await api("POST", "/createRoom", a.access_token, {preset: "public_chat", name: "plain"});
  const r2 = await api("POST", "/createRoom", a.access_token, {preset: "public_chat", name: "secret",
    initial_state: [{type: "m.room.encryption", state_key: "", content: {algorithm: "m.megolm.v1.aes-sha2"}}]});
  for (const id of [r1.room_id, r2.room_id]) await api("POST", `/join/${encodeURIComponent(id)}`, b.access_token, {});
  return [r1.room_id, r2.room_id];
});
const [A, B] = await step("both clients PREPARED over sliding sync (initRustCrypto)", () => Promise.all([start(a), start(b)]));

await step("alice's window [0, 0] holds the most recent room, the list counts both", async () => {
  const first = A.seen[0];
  check(first?.lists?.all?.count === 2, `count: ${JSON.stringify(first?.lists)}`);
  check(top(A.seen) === secret, `top room ${top(A.seen)}, expected the encrypted room (joined last)`);
  check(A.c.getRoom(secret)?.name === "secret", `room name in the SDK: ${A.c.getRoom(secret)?.name}`);
});

await step("a message in the other room moves it to the top of alice's window", async () => {
  await api("PUT", `/rooms/${encodeURIComponent(plain)}/send/m.room.message/m${Date.now()}`, b.access_token, {msgtype: "m.text", body: "bump"});
  await until("the plain room at the top", () => top(A.seen) === plain);
  await until("the message in the SDK's timeline", () =>
    A.c.getRoom(plain)?.getLiveTimeline().getEvents().some((e) => e.getContent().body === "bump"));
});

await step("e2ee + to_device extensions: bob's encrypted message decrypts on alice's device", async () => {
  // Bob's client needs the encrypted room in its window to encrypt there: it is his most recent.
  await api("PUT", `/rooms/${encodeURIComponent(secret)}/send/m.room.message/m${Date.now()}`, a.access_token, {msgtype: "m.text", body: "bump secret"});
  await until("bob's SDK knows the room is encrypted", async () => await B.c.getCrypto().isEncryptionEnabledInRoom(secret));
  await B.c.sendTextMessage(secret, "hello alice, secretly");
  await until("alice decrypts", () => A.c.getRoom(secret)?.getLiveTimeline().getEvents().find((e) =>
    e.getWireType() === "m.room.encrypted" && e.getType() === "m.room.message" && e.getContent().body === "hello alice, secretly"), 20000);
});

await step("to_device extension: a to-device message from bob reaches alice's client", async () => {
  const got = new Promise((res) => A.c.on(sdk.ClientEvent.ToDeviceEvent, (ev) => { if (ev.getType() === "org.example.ping") res(ev); }));
  await api("PUT", `/sendToDevice/org.example.ping/t${Date.now()}`, b.access_token, {messages: {[a.user_id]: {[a.device_id]: {n: 1}}}});
  const ev = await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error("no to-device event")), 10000))]);
  check(ev.getContent().n === 1, JSON.stringify(ev.getContent()));
});

A.c.stopClient(); B.c.stopClient();
log("OK");
process.exit(0);
