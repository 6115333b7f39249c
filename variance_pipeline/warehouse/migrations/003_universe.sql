-- Version 3: the symbol universe of each run, and where each symbol came from.
-- Grain: one row per (as_of_date, symbol); as_of_date is the last session of the run that landed it.
CREATE TABLE IF NOT EXISTS universe (
    as_of_date        DATE    NOT NULL,
    symbol            VARCHAR NOT NULL,
    source            VARCHAR NOT NULL,  -- 'held' | 'watchlist' | 'held+watchlist'
    held_positions    BIGINT  NOT NULL,  -- position rows exposed to the symbol (0 for watchlist only)
    positions_as_of   DATE,              -- the positions snapshot the held symbols came from
    PRIMARY KEY (as_of_date, symbol)
);
