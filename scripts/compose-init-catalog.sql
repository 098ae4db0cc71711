CREATE DATABASE phangs_catalog OWNER airflow;
