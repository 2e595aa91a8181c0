// The AI SDK's own client (the `ai` package, v6) against a served Agent Sessions instance:
// send a message, wait for the stream to end where the turn waits for a person, answer as a web
// app does, and let `sendAutomaticallyWhen` post the answer back:
// - with `answers`: the `ask_user_question` calls get `addToolOutput`
//   (`lastAssistantMessageIsCompleteWithToolCalls`);
// - else: the tool approval requests get `addToolApprovalResponse` with `approved` and `reason`
//   (`lastAssistantMessageIsCompleteWithApprovalResponses`).
//
// Input: one JSON object on argv[2]:
//   {url, headers, sessionId, chatId, model, prompt, answers} or {…, approved, reason?}
// Output: one JSON object on stdout: {asked, messages, finishReasons, errors}.

import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
} from 'ai';

class State {
  constructor() {
    this.status = 'ready';
    this.error = undefined;
    this.messages = [];
  }
  pushMessage(message) {
    this.messages = [...this.messages, message];
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new State() });
  }
}

const input = JSON.parse(process.argv[2]);
const answering = input.answers !== undefined;
const errors = [];
const finishReasons = [];
let finished = 0;
const waiters = [];

const chat = new Chat({
  id: input.chatId,
  transport: new DefaultChatTransport({
    api: `${input.url}/api/chat`,
    headers: input.headers,
    body: { sessionId: input.sessionId, model: input.model },
  }),
  sendAutomaticallyWhen: answering
    ? lastAssistantMessageIsCompleteWithToolCalls
    : lastAssistantMessageIsCompleteWithApprovalResponses,
  onError: error => errors.push(String(error?.message ?? error)),
  onFinish: ({ finishReason }) => {
    finishReasons.push(finishReason ?? null);
    finished += 1;
    for (const wake of waiters.splice(0)) wake();
  },
});

function responses(n) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for response ${n}`)),
      60_000,
    );
    const check = () => {
      if (finished >= n) {
        clearTimeout(timer);
        resolve();
      } else {
        waiters.push(check);
      }
    };
    check();
  });
}

await chat.sendMessage({ text: input.prompt });
await responses(1);
const last = chat.messages[chat.messages.length - 1];
const asked = last.parts.filter(p =>
  answering
    ? p.type === 'tool-ask_user_question' && p.state === 'input-available'
    : p.state === 'approval-requested',
);
for (const part of asked) {
  if (answering) {
    await chat.addToolOutput({
      tool: 'ask_user_question',
      toolCallId: part.toolCallId,
      output: { answers: input.answers },
    });
  } else {
    await chat.addToolApprovalResponse({
      id: part.approval.id,
      approved: input.approved,
      reason: input.reason,
    });
  }
}
if (asked.length > 0) {
  await responses(2); // sent automatically once every call has its answer
}
process.stdout.write(
  JSON.stringify({ asked, messages: chat.messages, finishReasons, errors }),
);
