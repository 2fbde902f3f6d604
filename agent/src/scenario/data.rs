//! CSV data feeders: rows loaded once per agent, handed to VUs per iteration.

use std::sync::atomic::{AtomicU64, Ordering};

use messages::spec::{DataMode, DataSource, OnEnd};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data source `{name}`: {reason}")]
    Csv { name: String, reason: String },
}

pub struct Feeder {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    mode: DataMode,
    on_end: OnEnd,
    shared_cursor: AtomicU64,
    agent: u64,
    agents: u64,
}

impl Feeder {
    /// Parses CSV bytes (first row = header). `agent`/`agents` partition rows for shared mode so
    /// the fleet uses each row once per pass.
    pub fn from_csv(
        name: &str,
        src: &DataSource,
        bytes: &[u8],
        agent: u32,
        agents: u32,
    ) -> Result<Feeder, DataError> {
        let err = |reason: String| DataError::Csv {
            name: name.to_string(),
            reason,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes);
        let columns: Vec<String> = rdr
            .headers()
            .map_err(|e| err(format!("{}: bad header row: {e}", src.file)))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| err(format!("{} row {}: {e}", src.file, i + 2)))?;
            rows.push(rec.iter().map(str::to_string).collect());
        }
        if rows.is_empty() {
            return Err(err(format!("{} has a header but no rows", src.file)));
        }
        Ok(Feeder {
            name: name.to_string(),
            columns,
            rows,
            mode: src.mode,
            on_end: src.on_end,
            shared_cursor: AtomicU64::new(0),
            agent: u64::from(agent),
            agents: u64::from(agents.max(1)),
        })
    }

    pub fn column(&self, col: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == col)
    }

    /// The row for a VU's next iteration; `None` when the data ran out (`on_end: stop`).
    /// `vu_cursor` is the VU's own position (per-vu mode), `vu` its global number.
    pub fn next_row(&self, vu_cursor: &mut u64, vu: u64) -> Option<usize> {
        let len = self.rows.len() as u64;
        match self.mode {
            DataMode::PerVu => {
                let c = *vu_cursor;
                *vu_cursor += 1;
                if self.on_end == OnEnd::Stop && c >= len {
                    return None;
                }
                Some(((vu + c) % len) as usize)
            }
            DataMode::Shared => {
                let i = self.shared_cursor.fetch_add(1, Ordering::Relaxed);
                // This agent's rows: agent, agent + agents, ...
                let mine = len.saturating_sub(self.agent).div_ceil(self.agents);
                if mine == 0 {
                    return match self.on_end {
                        OnEnd::Stop => None,
                        OnEnd::Cycle => Some((i % len) as usize),
                    };
                }
                if self.on_end == OnEnd::Stop && i >= mine {
                    return None;
                }
                Some((self.agent + (i % mine) * self.agents) as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(mode: DataMode, on_end: OnEnd) -> DataSource {
        DataSource {
            file: "u.csv".into(),
            mode,
            on_end,
        }
    }

    const CSV: &[u8] = b"name,pass\na,1\nb,2\nc,3\nd,4\ne,5\n";

    #[test]
    fn shared_rows_are_partitioned_across_agents() {
        let mut seen = Vec::new();
        for agent in 0..2 {
            let f =
                Feeder::from_csv("u", &src(DataMode::Shared, OnEnd::Stop), CSV, agent, 2).unwrap();
            let mut c = 0;
            while let Some(r) = f.next_row(&mut c, 0) {
                seen.push(f.rows[r][0].clone());
            }
        }
        seen.sort();
        assert_eq!(seen, vec!["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn per_vu_cycles_from_its_own_offset() {
        let f = Feeder::from_csv("u", &src(DataMode::PerVu, OnEnd::Cycle), CSV, 0, 1).unwrap();
        let mut c = 0;
        let rows: Vec<usize> = (0..6).filter_map(|_| f.next_row(&mut c, 3)).collect();
        assert_eq!(rows, vec![3, 4, 0, 1, 2, 3]);
    }

    #[test]
    fn bad_csv_is_an_error_naming_the_file() {
        let e = Feeder::from_csv("u", &src(DataMode::Shared, OnEnd::Cycle), b"a,b\n", 0, 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("u.csv has a header but no rows"));
    }
}
