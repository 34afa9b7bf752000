// Starts the fauxqs SQS emulator for jobfleet's local stack.
//
// fauxqs binds 0.0.0.0 whatever host it is given; the patch below rewrites
// that address to loopback before fastify listens, so the emulator is never
// reachable from outside this machine. The chosen port (FAUXQS_PORT, 0 for any
// free one) is printed on stdout as one JSON line once the server answers.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] && typeof args[0] === "object" && (args[0].host === "0.0.0.0" || args[0].host === undefined)) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[1] === "string" && args[1] === "0.0.0.0") {
    args[1] = "127.0.0.1";
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const server = await startFauxqs({
  port: Number.parseInt(process.env.FAUXQS_PORT ?? "0", 10),
  logger: process.env.FAUXQS_LOGGER === "true",
});
process.stdout.write(JSON.stringify({ service: "sqs", port: server.port }) + "\n");

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
