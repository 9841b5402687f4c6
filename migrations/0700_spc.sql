-- Statistical process control (ADR 0056).

-- The process manager's index of SPC characteristics (kept from SpcCharacteristicDefined
-- as the log is read), so an inspection finds the characteristics it feeds: those its
-- measurements name, and those fed by every inspection of a product.
CREATE TABLE process_spc_characteristics (
    characteristic_id text  PRIMARY KEY,
    chart             text  NOT NULL,
    source            jsonb NOT NULL,
    source_kind       text  NOT NULL,
    product_id        text
);
CREATE INDEX process_spc_characteristics_inspections
    ON process_spc_characteristics (product_id) WHERE source_kind = 'inspections';

-- Read model `spc` (projection): characteristics, their points and their signals.
CREATE TABLE rm_spc_characteristics (
    characteristic_id text             PRIMARY KEY,
    name              text             NOT NULL,
    chart             text             NOT NULL,
    subgroup_size     integer          NOT NULL,
    source_kind       text             NOT NULL,
    product_id        text,
    machine_id        text,
    lsl               double precision,
    usl               double precision,
    target            double precision,
    rules             jsonb            NOT NULL,
    samples           bigint           NOT NULL DEFAULT 0,
    limits_version    integer,
    center            double precision,
    ucl               double precision,
    lcl               double precision,
    process_sigma     double precision,
    signals           bigint           NOT NULL DEFAULT 0,
    last_signal_at    timestamptz,
    defined_at        timestamptz      NOT NULL,
    updated_at        timestamptz      NOT NULL
);
CREATE INDEX rm_spc_characteristics_machine ON rm_spc_characteristics (machine_id);

CREATE TABLE rm_spc_points (
    characteristic_id text             NOT NULL,
    idx               bigint           NOT NULL,
    value             double precision NOT NULL,
    spread            double precision,
    size              bigint           NOT NULL,
    count             bigint,
    limits_version    integer,
    z                 double precision,
    order_id          text,
    inspection_id     text,
    at                timestamptz      NOT NULL,
    PRIMARY KEY (characteristic_id, idx)
);

CREATE TABLE rm_spc_signals (
    position          bigint           PRIMARY KEY,
    characteristic_id text             NOT NULL,
    idx               bigint           NOT NULL,
    rule              text             NOT NULL,
    part              text             NOT NULL,
    value             double precision NOT NULL,
    z                 double precision NOT NULL,
    limits_version    integer          NOT NULL,
    machine_id        text,
    at                timestamptz      NOT NULL
);
CREATE INDEX rm_spc_signals_characteristic ON rm_spc_signals (characteristic_id, idx);
CREATE INDEX rm_spc_signals_at ON rm_spc_signals (at DESC);
