// vl2-server driven by the official OpenAI JavaScript client (npm "openai", pinned in
// package.json beside this file), as editors and scripts use it. Prints TAP.
//
// usage: node test-openai-client.mjs VL2_SERVER VL2 MODEL_DIR GOLDEN_DIR NODE_MODULES_PARENT
//
// Non-streaming and streaming answers to an image sent as a data: URL equal `vl2 eval`'s
// greedy answer; the client's own error classes come out of the server's errors.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import path from 'node:path';

const [server, vl2, model, golden, modulesParent] = process.argv.slice(2);
const require = createRequire(path.resolve(modulesParent, 'package.json'));
let OpenAI;
try {
  OpenAI = require('openai');
} catch {
  console.log(`1..0 # SKIP the openai package is not installed in ${modulesParent} (.ci/setup runs npm ci there)`);
  process.exit(0);
}
const KEY = 'client-test-key';
let n = 0;
let failed = false;

function check(ok, what, detail) {
  n += 1;
  console.log(`${ok ? 'ok' : 'not ok'} ${n} - ${what}`);
  if (!ok) {
    failed = true;
    if (detail !== undefined) {
      for (const line of String(detail).split('\n').slice(-20)) console.log(`#   ${line}`);
    }
  }
}

function startServer() {
  const proc = spawn(server, ['--model', model, '--port', '0', '--api-key', KEY],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout });
    lines.once('line', (line) => {
      const m = line.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) resolve({ proc, port: Number(m[1]) });
      else reject(new Error(`vl2-server did not start: ${line}`));
    });
    proc.once('exit', (code) => reject(new Error(`vl2-server exited with ${code}`)));
  });
}

function evalCase(c, tokens) {
  const file = path.join(tmpdir(), `vl2-client-case-${process.pid}.json`);
  writeFileSync(file, JSON.stringify(c));
  try {
    const out = execFileSync(vl2, ['eval', '--model', model, '--case', file, '--images',
      path.join(golden, 'images'), '--max-new-tokens', String(tokens)]);
    return JSON.parse(out.toString());
  } finally {
    unlinkSync(file);
  }
}

async function main() {
  const cases = JSON.parse(readFileSync(path.join(golden, 'cases.json'))).cases;
  const vqa = cases.find((c) => c.name === 'vqa_jpeg');
  const tokens = 12;
  const want = evalCase(vqa, tokens).text.split('<｜end▁of▁sentence｜>')[0];
  const image = readFileSync(path.join(golden, 'images', vqa.conversation[0].images[0]));
  const question = vqa.conversation[0].content.replace('<image>\n', '');
  const messages = [{
    role: 'user',
    content: [
      { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${image.toString('base64')}` } },
      { type: 'text', text: question },
    ],
  }];

  const { proc, port } = await startServer();
  try {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: KEY, maxRetries: 0 });

    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    check(ids.length === 1 && ids[0] === path.basename(model), 'models.list() names the model', ids);

    const completion = await client.chat.completions.create({
      model: ids[0], messages, temperature: 0, max_tokens: tokens,
    });
    const text = completion.choices[0].message.content;
    check(text === want && completion.usage.completion_tokens === tokens,
      'chat.completions.create() with an image data URL: the greedy answer equals vl2 eval\'s',
      `client: ${JSON.stringify(text)}\neval:   ${JSON.stringify(want)}`);

    const stream = await client.chat.completions.create({
      model: ids[0], messages, temperature: 0, max_tokens: tokens, stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = '';
    let usage = null;
    let finish = null;
    const chunkIds = new Set();
    for await (const chunk of stream) {
      chunkIds.add(chunk.id);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        streamed += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
    }
    check(streamed === want && chunkIds.size === 1 && finish === 'length'
      && usage && usage.completion_tokens === tokens && usage.prompt_tokens > 1000,
      'stream: true, include_usage: the same answer in chunks of one id, then the usage',
      `${JSON.stringify(streamed)} ${[...chunkIds]} ${finish} ${JSON.stringify(usage)}`);

    // the stream helper of the client, which also checks the chunk order
    const runner = client.chat.completions.stream({
      model: ids[0], messages, temperature: 0, max_tokens: tokens,
    });
    const final = await runner.finalChatCompletion();
    check(final.choices[0].message.content === want,
      'chat.completions.stream(): the client assembles the same answer',
      JSON.stringify(final.choices[0].message));

    try {
      const bad = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'wrong', maxRetries: 0 });
      await bad.chat.completions.create({ model: ids[0], messages });
      check(false, 'a wrong API key raises AuthenticationError');
    } catch (e) {
      check(e instanceof OpenAI.AuthenticationError && e.status === 401
        && e.code === 'invalid_api_key', 'a wrong API key raises AuthenticationError', e);
    }
    try {
      await client.chat.completions.create({ model: 'gpt-4o', messages });
      check(false, 'an unknown model raises NotFoundError');
    } catch (e) {
      check(e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
        'an unknown model raises NotFoundError', e);
    }
    try {
      await client.chat.completions.create({
        model: ids[0],
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }],
      });
      check(false, 'a broken image raises BadRequestError');
    } catch (e) {
      check(e instanceof OpenAI.BadRequestError && e.code === 'invalid_image',
        'a broken image raises BadRequestError', e);
    }
  } finally {
    proc.kill('SIGTERM');
  }
  console.log(`1..${n}`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.log(`not ok ${n + 1} - ${e.stack}`);
  console.log(`1..${n + 1}`);
  process.exitCode = 1;
});
