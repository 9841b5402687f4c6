-- The ISA-95 equipment hierarchy (ADR 0062): read model `hierarchy` (projection).

-- Every node as it stands now (the current parent and name).
CREATE TABLE rm_hierarchy_nodes (
    node_id     text        PRIMARY KEY,
    level       text        NOT NULL,
    name        text        NOT NULL,
    parent      text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX rm_hierarchy_nodes_parent ON rm_hierarchy_nodes (parent);

-- Every parent a node had: its creation and each move, with the floor time it takes
-- effect from and the time it was recorded (for `as_of`). The first record of a node
-- holds for all time before the next one.
CREATE TABLE rm_hierarchy_parents (
    node_id         text        NOT NULL,
    position        bigint      NOT NULL,
    parent          text,
    effective_from  timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (node_id, position)
);

-- Every placement of a machine in a work cell (cell NULL: directly on its line). The
-- first placement of a machine holds for all time before the next one.
CREATE TABLE rm_hierarchy_placements (
    machine_id      text        NOT NULL,
    position        bigint      NOT NULL,
    line            text        NOT NULL,
    cell            text,
    effective_from  timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (machine_id, position)
);
