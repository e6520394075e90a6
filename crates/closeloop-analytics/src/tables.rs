//! The fact tables of one generation. Generation 0's are created by the
//! migrations (`analytics_tickets`, ...); a rebuild creates a new
//! generation's (`analytics_tickets_g1`, ...) from `fact_tables.sql` (the
//! schema the migrations bring generation 0 to), fills them from the start
//! of the stream, and switches readers over when they have caught up (see
//! [`crate::generations`]).

/// The DDL of one generation, with generation 0's names: what migrations
/// 5000 and 5002 made of generation 0 (an integration test compares the
/// two schemas on SQLite and PostgreSQL).
const DDL: &str = include_str!("fact_tables.sql");

/// The fact tables, by their generation-0 names.
pub const BASE: [&str; 7] = [
    "analytics_tickets",
    "analytics_ticket_events",
    "analytics_responses",
    "analytics_accounts",
    "analytics_sla_due",
    "analytics_sla_events",
    "analytics_routing",
];

/// One generation's table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub generation: i64,
    pub tickets: String,
    pub ticket_events: String,
    pub responses: String,
    pub accounts: String,
    pub sla_due: String,
    pub sla_events: String,
    pub routing: String,
}

fn suffixed(base: &str, generation: i64) -> String {
    if generation == 0 {
        base.to_string()
    } else {
        format!("{base}_g{generation}")
    }
}

impl Tables {
    pub fn of(generation: i64) -> Tables {
        let n = |b: &str| suffixed(b, generation);
        Tables {
            generation,
            tickets: n(BASE[0]),
            ticket_events: n(BASE[1]),
            responses: n(BASE[2]),
            accounts: n(BASE[3]),
            sla_due: n(BASE[4]),
            sla_events: n(BASE[5]),
            routing: n(BASE[6]),
        }
    }

    /// Every table's name, in [`BASE`] order.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.tickets,
            &self.ticket_events,
            &self.responses,
            &self.accounts,
            &self.sla_due,
            &self.sla_events,
            &self.routing,
        ]
    }

    /// The checkpoint name of projection `base` in this generation.
    pub fn checkpoint(&self, base: &str) -> String {
        if self.generation == 0 {
            base.to_string()
        } else {
            format!("{base}@g{}", self.generation)
        }
    }

    /// The statements creating this generation's tables and indexes
    /// ([`DDL`], renamed).
    pub fn ddl(&self) -> String {
        let mut sql = DDL.to_string();
        // Longest names first: none is a prefix of another as a whole word,
        // but index names embed table names (`analytics_tickets_by_opened`).
        let mut bases = BASE;
        bases.sort_by_key(|b| std::cmp::Reverse(b.len()));
        let mut out = String::with_capacity(sql.len());
        'scan: while !sql.is_empty() {
            for b in bases {
                if sql.starts_with(b) {
                    out.push_str(&suffixed(b, self.generation));
                    sql.drain(..b.len());
                    continue 'scan;
                }
            }
            let c = sql.remove(0);
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_renames_every_table_and_index() {
        assert_eq!(Tables::of(0).ddl(), DDL);
        let ddl = Tables::of(3).ddl();
        for b in BASE {
            assert!(ddl.contains(&format!("CREATE TABLE {b}_g3 (")), "{b}");
        }
        assert!(ddl.contains("analytics_tickets_g3_by_opened ON analytics_tickets_g3"));
        assert!(!ddl.contains("analytics_tickets ("));
        assert_eq!(
            Tables::of(3).checkpoint("analytics_sla"),
            "analytics_sla@g3"
        );
    }
}
