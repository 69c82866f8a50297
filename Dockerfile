FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY companion ./companion
COPY api ./api
COPY prompts ./prompts
RUN pip install --no-cache-dir .
ENV COMPANION_DATA_DIR=/data COMPANION_HOST=0.0.0.0 COMPANION_PROMPTS_DIR=/app/prompts
VOLUME /data
EXPOSE 8000
CMD ["companion", "serve"]
