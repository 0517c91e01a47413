'use strict';
/*
 * A conversation held by the official Node SDK (@coze/api, its `websockets.chat` client), for the
 * conformance tests: `node sdk_client.js PLAN.json` reads a plan, holds the conversation and prints one
 * JSON document on stdout. It imports nothing of the project.
 *
 * The SDK's chat client is a thin WebSocket (the `ws` package on Node, behind reconnecting-websocket)
 * with one `onmessage` callback; a caller dispatches each event by its `event_type`, which the SDK
 * declares in its `WebsocketsEventType` enum. The handlers here are exactly that dispatch table: one
 * per server event the enum names. An event whose type the enum lacks is "unknown"; anything the SDK
 * itself reports through `onerror`, or logs with console.error (a frame it cannot parse), is an error.
 *
 * Plan: {"base_ws_url", "bot_id", "token", "tool_output", "answer_tools", "refused", "steps": [...]};
 * a step is one of
 *   {"wait": EVENT, "count": N, "timeout_s": S}   N events of that type have arrived (in all),
 *   {"send": EVENT, "data": {...}}               one client event through the SDK's send(),
 *   {"append_file": PATH, "chunk_bytes": N}      raw PCM as input_audio_buffer.append events.
 * With "refused": true the handshake is expected to fail: the report's "refusal" holds what the SDK's
 * onerror received (code, message, logid).
 *
 * Report: {"typed": [{name, data, logid}], "unknown": [...], "errors": [...], "console_errors": [...],
 *          "refusal": {...} | null, "failure": string | null, "sdk_version": string}.
 */

const fs = require('fs');
const path = require('path');
const { CozeAPI, WebsocketsEventType } = require('@coze/api');

const CONTENT_CHARS = 200;
const DEFAULT_TIMEOUT_S = 20;
// SDK-side pseudo events (never sent by a server) and the client events it sends.
const NOT_SERVER_EVENTS = new Set(['all', 'client_error', 'closed']);

const consoleErrors = [];
const originalConsoleError = console.error;
console.error = (...parts) => {
  consoleErrors.push(parts.map(String).join(' ').slice(0, 500));
};

class Recorder {
  constructor(plan) {
    this.typed = [];
    this.unknown = [];
    this.errors = [];
    this.closed = false;
    this.toolOutput = plan.tool_output === undefined ? '{}' : plan.tool_output;
    this.answerTools = plan.answer_tools !== false;
    this.waiters = new Set();
    this.handlers = {};
    for (const name of Object.values(WebsocketsEventType)) {
      if (!NOT_SERVER_EVENTS.has(name)) {
        this.handlers[name] = (ws, event) => this.onTyped(ws, name, event);
      }
    }
  }

  dispatch(ws, event) {
    const handler = this.handlers[event && event.event_type];
    if (handler) {
      handler(ws, event);
    } else {
      this.unknown.push(JSON.stringify(event).slice(0, 300));
    }
    this.wake();
  }

  onTyped(ws, name, event) {
    if (name === WebsocketsEventType.ERROR) {
      this.errors.push(`error: ${JSON.stringify(event.data)}`.slice(0, 500));
      return;
    }
    this.typed.push({ name, event });
    if (name === WebsocketsEventType.CONVERSATION_CHAT_REQUIRES_ACTION && this.answerTools) {
      const calls = event.data.required_action.submit_tool_outputs.tool_calls;
      ws.send({
        id: `tools-${this.typed.length}`,
        event_type: WebsocketsEventType.CONVERSATION_CHAT_SUBMIT_TOOL_OUTPUTS,
        data: {
          chat_id: event.data.id,
          tool_outputs: calls.map((call) => ({ tool_call_id: call.id, output: this.toolOutput })),
        },
      });
    }
  }

  wake() {
    for (const waiter of this.waiters) waiter();
  }

  count(name) {
    return this.typed.filter((e) => e.name === name).length;
  }

  waitFor(name, count, timeoutS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.count(name) >= count) {
          done();
          resolve();
        } else if (this.errors.length || this.closed) {
          done();
          reject(new Error(`waiting for ${name}: errors ${this.errors}, closed ${this.closed}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutS} s waiting for ${count} x ${name} (have ${this.count(name)})`));
      }, timeoutS * 1000);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

function eventJson(name, event) {
  const data = event.data === undefined ? null : JSON.parse(JSON.stringify(event.data));
  if (data && name === WebsocketsEventType.CONVERSATION_AUDIO_DELTA) {
    data.content = String(data.content || '').length;
  } else if (data && typeof data.content === 'string') {
    data.content = data.content.slice(0, CONTENT_CHARS);
  }
  return { name, data, logid: (event.detail && event.detail.logid) || null };
}

let nextId = 0;

async function runSteps(ws, recorder, steps) {
  for (const step of steps) {
    if (step.wait !== undefined) {
      await recorder.waitFor(step.wait, step.count || 1, step.timeout_s || DEFAULT_TIMEOUT_S);
    } else if (step.append_file !== undefined) {
      const pcm = fs.readFileSync(step.append_file);
      const size = step.chunk_bytes || 3200;
      for (let i = 0; i < pcm.length; i += size) {
        ws.send({
          id: `append-${(nextId += 1)}`,
          event_type: WebsocketsEventType.INPUT_AUDIO_BUFFER_APPEND,
          data: { delta: pcm.subarray(i, i + size).toString('base64') },
        });
      }
    } else {
      const event = { id: `client-${(nextId += 1)}`, event_type: step.send };
      if (step.data !== undefined) event.data = step.data;
      ws.send(event);
    }
  }
}

function opened(ws, recorder, timeoutS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the WebSocket did not open')), timeoutS * 1000);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve();
    };
    ws.onerror = (error) => {
      clearTimeout(timer);
      recorder.refusal = { code: error.data.code, msg: error.data.msg, logid: error.detail.logid || null };
      reject(new Error(`handshake failed: ${JSON.stringify(error)}`));
    };
  });
}

async function main(plan) {
  const recorder = new Recorder(plan);
  const coze = new CozeAPI({ token: plan.token, baseURL: plan.base_url || plan.base_ws_url, baseWsURL: plan.base_ws_url });
  // No reconnection: a refused or dropped connection must end the conversation, not hide in retries.
  const ws = await coze.websockets.chat.create({ bot_id: plan.bot_id }, { maxRetries: 0 });
  ws.onmessage = (event) => recorder.dispatch(ws, event);
  ws.onclose = () => {
    recorder.closed = true;
    recorder.wake();
  };
  let failure = null;
  let refusal = null;
  try {
    await opened(ws, recorder, 10);
    ws.onerror = (error) => {
      recorder.errors.push(`onerror: ${JSON.stringify(error)}`.slice(0, 500));
      recorder.wake();
    };
    if (plan.refused) throw new Error('the handshake was expected to be refused');
    await runSteps(ws, recorder, plan.steps || []);
  } catch (error) {
    if (plan.refused && recorder.refusal) {
      refusal = recorder.refusal;
    } else {
      failure = String(error && error.stack ? error.stack : error).slice(-2000);
    }
  } finally {
    ws.close();
  }
  return {
    typed: recorder.typed.map((e) => eventJson(e.name, e.event)),
    unknown: recorder.unknown,
    errors: recorder.errors,
    refusal,
    failure,
  };
}

const planPath = process.argv[2];
if (!planPath) {
  originalConsoleError('usage: node sdk_client.js PLAN.json');
  process.exit(2);
}
main(JSON.parse(fs.readFileSync(planPath, 'utf8')))
  .then((result) => {
    const manifest = path.join(path.dirname(require.resolve('@coze/api')), '..', '..', 'package.json');
    result.sdk_version = JSON.parse(fs.readFileSync(manifest, 'utf8')).version;
    result.console_errors = consoleErrors;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    // reconnecting-websocket may hold a timer after close; the report is complete.
    process.exit(0);
  })
  .catch((error) => {
    originalConsoleError(error);
    process.exit(1);
  });
