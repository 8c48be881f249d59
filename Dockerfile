# One image for every Conveyor process (API, workers, adapter, relay, migrate); which one
# runs is the compose service's command. Built by `docker compose build`.
FROM python:3.11-slim-bookworm

# What the stages shell out to or load: Tesseract (OCR), poppler (PDF pages and text),
# libmagic (type sniffing), a font, libvips (large images), LibreOffice (office text and
# previews; bubblewrap to sandbox it), ffmpeg (video and audio), librsvg (SVG); Pillow makes
# the thumbnails.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tesseract-ocr tesseract-ocr-eng poppler-utils libmagic1 fonts-dejavu-core \
        libvips-tools libreoffice-core libreoffice-writer libreoffice-calc \
        libreoffice-impress bubblewrap ffmpeg librsvg2-bin \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY conveyor_core conveyor_core
COPY conveyor_client conveyor_client
COPY api api
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY observability observability
RUN pip install --no-cache-dir .

# Tesseract: one thread per process is about twice as fast when several pages run at once.
# glibc: big stream buffers always mapped and returned, two arenas (flat worker memory).
ENV OMP_THREAD_LIMIT=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
RUN useradd --system --uid 10001 conveyor
USER conveyor
EXPOSE 8000
CMD ["python", "-m", "workers.api_server"]
