// Conveyor's upload page: Uppy's Dashboard uploads straight to the store through the API's
// Uppy routes; each uploaded file is then followed through its event stream (verify and
// every installed stage) until it ends, and the token's files can be searched.
import { AwsS3, Dashboard, GoldenRetriever, Uppy } from './vendor/uppy/uppy.min.mjs'

const config = JSON.parse(document.getElementById('conveyor-config').textContent)
const TOKEN_KEY = 'conveyor.uploadToken'
// Shown until a file's own stages are known (it lists every installed stage, plugins too).
const STAGES = ['verify', 'scan', 'thumbnails', 'text', 'ocr']
const TERMINAL = new Set(['ready', 'quarantined', 'failed', 'cancelled', 'expired', 'deleted'])
// An upload token holds at most 8 event streams; the rest of the files wait their turn.
const MAX_STREAMS = 6

const $ = (id) => document.getElementById(id)

class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

function takeToken () {
  const fromAddress = new URLSearchParams(window.location.hash.slice(1)).get('token')
  if (fromAddress) {
    sessionStorage.setItem(TOKEN_KEY, fromAddress)
    // Out of the address bar, the history and anything that reads the location.
    window.history.replaceState(null, '', window.location.pathname + window.location.search)
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

function notify (message, kind = 'error') {
  const notice = $('notice')
  notice.textContent = message
  notice.className = `notice ${kind}`
  notice.hidden = false
}

function el (tag, attributes = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value
    else node.setAttribute(name, value)
  }
  node.append(...children)
  return node
}

// Parts of 8 MiB (little to send again after a pause) up to 64 MiB for large files, which
// go faster in larger parts (bench.browser_upload); never more than S3's 10,000 parts.
function partSize (size) {
  const wanted = Math.min(Math.max(Math.ceil(size / 16), config.partSize), config.maxPartSize)
  return Math.max(wanted, Math.ceil(size / 10000))
}

function originRefusal () {
  if (config.origins.includes(window.location.origin)) return null
  return `This page is open at ${window.location.origin}, an origin Conveyor does not accept ` +
    `uploads from (CONVEYOR_CORS_ORIGINS: ${config.origins.join(', ')}). ` +
    'Open it from one of those, or add this origin to the setting.'
}

function start (token) {
  const api = async (path, options = {}) => {
    const response = await fetch(path, {
      ...options,
      headers: { Authorization: `Bearer ${token}`, ...(options.headers || {}) },
    })
    if (!response.ok) {
      const body = await response.json().catch(() => null)
      const error = body?.error ?? {}
      throw new ApiError(response.status, error.code, error.message || response.statusText)
    }
    return response
  }

  const tokenTrouble = (error) => {
    if (error?.status === 401 || error?.code === 'upload_token_expired') {
      sessionStorage.removeItem(TOKEN_KEY)
      notify(`${error.message} This page needs a new upload token (see below).`)
      $('sign-in').hidden = false
      return true
    }
    return false
  }

  const files = new Map() // file id -> {card, status, lastEventId}
  const streams = { open: 0, waiting: [] }

  function stageChips (stages) {
    const names = stages && Object.keys(stages).length
      ? ['verify', ...Object.keys(stages).filter((name) => name !== 'verify').sort()]
      : STAGES
    return names.map((name) => {
      const state = stages?.[name]?.status ?? 'pending'
      return el('li', { class: `stage ${state}`, 'data-stage': name, text: `${name}: ${state}` })
    })
  }

  function card (fileId, filename) {
    let entry = files.get(fileId)
    if (entry) return entry
    const node = el('li', { class: 'file', 'data-file-id': fileId },
      el('div', { class: 'thumb' }),
      el('div', { class: 'about' },
        el('span', { class: 'name', text: filename }),
        el('span', { class: 'status', text: 'processing' }),
        el('ul', { class: 'stages' }, ...stageChips({})),
        el('p', { class: 'detail' })))
    $('files').prepend(node)
    entry = { node, status: 'processing', lastEventId: null }
    files.set(fileId, entry)
    return entry
  }

  function thumbnail (file) {
    const smallest = [...(file.thumbnails || [])].sort((a, b) => a.size - b.size)[0]
    if (!smallest) return null
    return el('img', { src: smallest.url, alt: `thumbnail of ${file.filename}`, loading: 'lazy' })
  }

  function show (file) {
    const entry = card(file.id, file.filename)
    entry.status = file.status
    const { node } = entry
    node.dataset.status = file.status
    node.querySelector('.status').textContent = file.status
    node.querySelector('.stages').replaceChildren(...stageChips(file.stages))
    const detail = file.status_detail ||
      Object.entries(file.stages || {}).filter(([, s]) => s.status === 'failed')
        .map(([name, s]) => `${name}: ${s.detail}`).join('; ')
    node.querySelector('.detail').textContent = file.status === 'ready' && !file.status_detail
      ? (detail ? `ready; ${detail}` : '')
      : detail
    const image = thumbnail(file)
    node.querySelector('.thumb').replaceChildren(...(image ? [image] : []))
  }

  function applyEvent (fileId, event) {
    const entry = files.get(fileId)
    if (!entry) return
    if (event.type === 'stage') {
      let chip = entry.node.querySelector(`[data-stage="${CSS.escape(event.stage)}"]`)
      if (!chip) { // a stage this page did not list yet (an installed plugin's)
        chip = el('li', { 'data-stage': event.stage })
        entry.node.querySelector('.stages').append(chip)
      }
      chip.className = `stage ${event.status}`
      chip.textContent = `${event.stage}: ${event.status}`
    } else {
      entry.status = event.status
      entry.node.dataset.status = event.status
      entry.node.querySelector('.status').textContent = event.status
      if (event.detail) entry.node.querySelector('.detail').textContent = event.detail
    }
  }

  async function readStream (fileId) {
    const entry = files.get(fileId)
    const headers = { Accept: 'text/event-stream' }
    if (entry.lastEventId) headers['Last-Event-ID'] = entry.lastEventId
    const response = await api(`/v1/files/${fileId}/events`, { headers })
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += value.replaceAll('\r\n', '\n')
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let data = ''
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) entry.lastEventId = line.slice(3).trim()
          else if (line.startsWith('data:')) data += line.slice(5).trim()
        }
        if (data) applyEvent(fileId, JSON.parse(data))
      }
    }
  }

  // Follows a file until it ends, then shows it as the API has it (thumbnails, reasons).
  async function follow (fileId) {
    if (streams.open >= MAX_STREAMS) {
      streams.waiting.push(fileId)
      return
    }
    streams.open += 1
    try {
      for (let attempt = 0; attempt < 30; attempt++) {
        try {
          await readStream(fileId)
        } catch (error) {
          if (tokenTrouble(error)) return
          await new Promise((resolve) => setTimeout(resolve, 1000))
        }
        const file = await (await api(`/v1/files/${fileId}`)).json()
        show(file)
        if (TERMINAL.has(file.status)) return
      }
    } catch (error) {
      if (!tokenTrouble(error)) notify(`Could not follow a file: ${error.message}`)
    } finally {
      streams.open -= 1
      const next = streams.waiting.shift()
      if (next) follow(next)
    }
  }

  async function listFiles () {
    const { files: listed } = await (await api('/v1/files?limit=50')).json()
    for (const file of listed.reverse()) {
      show(file)
      if (!TERMINAL.has(file.status) && file.status !== 'awaiting_upload') follow(file.id)
    }
  }

  const uppy = new Uppy({
    id: 'conveyor',
    autoProceed: true,
    restrictions: { maxFileSize: config.maxFileSize },
    onBeforeUpload: (files) => {
      const refusal = originRefusal()
      if (refusal) {
        notify(refusal)
        return false
      }
      return files
    },
  })
    .use(Dashboard, {
      inline: true,
      target: '#drop',
      height: 320,
      width: '100%',
      showProgressDetails: true,
      proudlyDisplayPoweredByUppy: false,
      note: 'Files go straight to the store; large ones in parts you can pause and resume.',
    })
    .use(AwsS3, {
      companionEndpoint: `${window.location.origin}/v1/uppy/${encodeURIComponent(token)}`,
      shouldUseMultipart: (file) => (file.size || 0) >= config.multipartFrom,
      getChunkSize: ({ size }) => partSize(size),
    })
    .use(GoldenRetriever, {
      indexedDB: { maxFileSize: config.resumableUpTo, maxTotalSize: 2 * config.resumableUpTo },
    })

  // After the tab closed or reloaded: go on with the uploads whose bytes the browser kept,
  // sending only the parts the store does not hold.
  uppy.on('restored', () => {
    const unfinished = uppy.getFiles().filter((f) => !f.progress.uploadComplete)
    const lost = unfinished.filter((f) => f.isGhost)
    if (lost.length > 0) {
      notify(`Add ${lost.map((f) => f.name).join(', ')} again to finish uploading.`, 'info')
    } else if (unfinished.length > 0) {
      notify(`Resuming ${unfinished.length} upload(s) from before the page closed.`, 'info')
      uppy.emit('restore-confirmed')
    }
  })

  uppy.on('upload-success', async (file, response) => {
    // The upload's key ends with its id, whose file the page then follows.
    const uploadId = response.body.key.split('/').pop()
    try {
      const upload = await (await api(`/v1/uploads/${uploadId}`)).json()
      card(upload.file_id, file.name)
      follow(upload.file_id)
    } catch (error) {
      if (!tokenTrouble(error)) notify(`Uploaded ${file.name}, but could not follow it: ${error.message}`)
    }
  })

  uppy.on('upload-error', async (file, error) => {
    const refusal = originRefusal()
    if (refusal) {
      notify(refusal)
      return
    }
    try {
      await api('/v1/files?limit=1') // says why, when the token is the trouble
      notify(`${file.name} did not upload: ${error.message}`)
    } catch (why) {
      if (!tokenTrouble(why)) notify(`${file.name} did not upload: ${why.message}`)
    }
  })

  $('search-form').addEventListener('submit', async (submitted) => {
    submitted.preventDefault()
    const query = $('search-input').value.trim()
    if (!query) return
    try {
      const found = await (await api(`/v1/files?limit=50&q=${encodeURIComponent(query)}`)).json()
      $('search-summary').textContent =
        `${found.files.length} file(s) match “${query}”.`
      $('results').replaceChildren(...found.files.map((file) =>
        el('li', { class: 'result', 'data-file-id': file.id },
          thumbnail(file) || el('div', { class: 'no-thumb', text: file.content_type }),
          el('span', { class: 'name', text: file.filename }))))
    } catch (error) {
      if (!tokenTrouble(error)) $('search-summary').textContent = error.message
    }
  })

  const refusal = originRefusal()
  if (refusal) notify(refusal)
  $('workspace').hidden = false
  listFiles().catch((error) => {
    if (!tokenTrouble(error)) notify(`Could not list your files: ${error.message}`)
  })
  window.conveyorUppy = uppy // for tests and the console
}

$('token-form').addEventListener('submit', (submitted) => {
  submitted.preventDefault()
  const value = $('token-input').value.trim()
  if (!value) return
  sessionStorage.setItem(TOKEN_KEY, value)
  window.location.reload()
})

const token = takeToken()
if (token) start(token)
else $('sign-in').hidden = false
