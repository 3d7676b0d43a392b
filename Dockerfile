# One image, three roles (see docker-compose.yml): the API (uvicorn), the control worker
# and the trial workers (celery). CUDA comes from the host through the NVIDIA runtime;
# torch is installed first, pinned, as in the README.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY search ./search
COPY integrations ./integrations
COPY workers ./workers
COPY service ./service
RUN pip install -e . flower
RUN useradd --create-home scaletune
USER scaletune
EXPOSE 8000
CMD ["uvicorn", "--factory", "service.api.app:create_app", "--host", "0.0.0.0", "--port", "8000"]
