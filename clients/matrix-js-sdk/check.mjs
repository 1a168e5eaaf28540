// matrix-js-sdk against Parley (manual client check; needs Node 20+).
// Usage: npm install && node check.mjs http://127.0.0.1:8008   (the server needs open registration)
import {base, log, quiet, register} from "./harness.mjs";
import * as sdk from "matrix-js-sdk";
const suffix = Math.random().toString(36).slice(2, 8);
const a = await register("jsa" + suffix), b = await register("jsb" + suffix);
const mk = (r) => sdk.createClient({baseUrl: base, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id, logger: quiet});
const ca = mk(a), cb = mk(b);
function prepared(c) { return new Promise((res) => c.on(sdk.ClientEvent.Sync, (s) => { if (s === "PREPARED") res(); })); }
const pa = prepared(ca), pb = prepared(cb);
ca.startClient({initialSyncLimit: 10}); cb.startClient({initialSyncLimit: 10});
await Promise.race([Promise.all([pa, pb]), new Promise((_, rej) => setTimeout(() => rej(new Error("no PREPARED in 20s")), 20000))]);
log("both clients PREPARED");
const {room_id} = await ca.createRoom({preset: "public_chat", name: "js room"});
log("room", room_id);
await cb.joinRoom(room_id);
log("bob joined");
const got = new Promise((res) => cb.on(sdk.RoomEvent.Timeline, (ev, room) => {
  if (room?.roomId === room_id && ev.getType() === "m.room.message" && ev.getContent().body === "hello from js") res(ev);
}));
const t0 = Date.now();
await ca.sendTextMessage(room_id, "hello from js");
const ev = await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error("message not received")), 10000))]);
log("bob received", ev.getId(), "in", Date.now() - t0, "ms");
await cb.sendReadReceipt(ev);
await ca.sendTyping(room_id, true, 5000);
const hist = await ca.createMessagesRequest(room_id, null, 30, "b");
log("history events:", hist.chunk.length, "members:", cb.getRoom(room_id)?.getJoinedMemberCount());
ca.stopClient(); cb.stopClient();
log("OK");
process.exit(0);
