# The promoflow image for docker-compose.yml: web (gunicorn), scheduler and
# Celery worker are the same image with different commands.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PROMOFLOW_LOG_FORMAT=json
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir '.[scale]' && useradd --system --home /var/lib/promoflow promoflow \
    && mkdir -p /var/lib/promoflow && chown promoflow /var/lib/promoflow
USER promoflow
WORKDIR /var/lib/promoflow
EXPOSE 8000
CMD ["promoflow", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
