# Production image of phangs-airflow: the official Airflow image + CASA + the phangs operators.
# Build:  docker build -t phangs-airflow:0.1.0 .
FROM apache/airflow:3.3.2-python3.11

USER root
# CASA's wheels are self-contained (manylinux_2_28); they need no system package beyond the base image.
ENV OMP_NUM_THREADS=1 \
    CASASITECONFIG=/opt/phangs/casasiteconfig.py \
    CASA_MEASURESPATH=/opt/phangs/casadata \
    CASA_LOG_DIR=/tmp/casa-logs \
    MPLCONFIGDIR=/tmp/mplconfig \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN mkdir -p /opt/phangs && chown -R airflow: /opt/phangs

USER airflow
WORKDIR /opt/phangs/src
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md ./
COPY --chown=airflow:root scripts/ ./scripts/
COPY --chown=airflow:root plugins/ ./plugins/
# The same install script `make setup` uses, here into the image's interpreter.
RUN bash scripts/install.sh --system \
 && python scripts/trim_casadata.py /opt/phangs/casadata \
 && python -m pip uninstall -y casadata \
 && cp plugins/phangs_operators/casa/casasiteconfig.py /opt/phangs/casasiteconfig.py

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root airflow_settings.yaml /opt/airflow/airflow_settings.yaml
WORKDIR /opt/airflow
ENV PHANGS_KEY_DIR=/opt/airflow/include/keys
HEALTHCHECK --interval=30s --timeout=10s CMD python -c "import phangs_operators" || exit 1
