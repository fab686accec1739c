// What browser.rs runs in the page, through the DevTools protocol: MQTT.js (the global `mqtt` of
// its browser bundle) subscribes, publishes, and reports what came back for the test to check.
'use strict';

// How long to wait for the messages expected, after the last publish has been acknowledged.
const ARRIVAL_TIMEOUT_MS = 10000;

// Connects to `url` with MQTT.js `options`, subscribes to `filter` at `subscribeQos`, publishes
// each of `messages` ({ topic, payload, qos, properties? }) and waits until as many messages have
// arrived (or ARRIVAL_TIMEOUT_MS has passed). Resolves with the QoS granted and what arrived, in
// order: { topic, payload, qos, retain, properties }. Rejects if the connection fails.
async function exchange({ url, options, filter, subscribeQos, messages }) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10000, ...options });
  try {
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
      client.once('close', () => reject(new Error(`the connection to ${url} closed before CONNACK`)));
    });
    const received = [];
    let allArrived;
    const arrived = new Promise((resolve) => { allArrived = resolve; });
    client.on('message', (topic, payload, packet) => {
      received.push({
        topic,
        payload: new TextDecoder().decode(payload),
        qos: packet.qos,
        retain: packet.retain,
        properties: packet.properties ?? null,
      });
      if (received.length === messages.length) allArrived();
    });
    const granted = await client.subscribeAsync(filter, { qos: subscribeQos });
    for (const { topic, payload, qos, properties } of messages) {
      await client.publishAsync(topic, payload, properties ? { qos, properties } : { qos });
    }
    let timer;
    const timedOut = new Promise((resolve) => { timer = setTimeout(resolve, ARRIVAL_TIMEOUT_MS); });
    await Promise.race([arrived, timedOut]);
    clearTimeout(timer);
    await client.endAsync();
    return { granted: granted.map((grant) => grant.qos), received };
  } catch (error) {
    client.end(true);
    throw error;
  }
}
