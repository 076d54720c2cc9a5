//! The simulated portal's customers, services and licences, generated
//! deterministically from a seed so that tests, samples and benchmarks agree
//! on what exists without sharing a file.
//!
//! The generator deliberately plants the traps of the real portal: client
//! references that are prefixes of others (`4021` / `40217`), several
//! MetaCentrex services for some clients, non-MetaCentrex services for every
//! client, licences without an SDA.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io;
use std::path::Path;

/// Shape of the generated dataset.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    pub seed: u64,
    pub clients: usize,
    pub licences_per_client: usize,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub reference: String,
    pub name: String,
    pub site: String,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub reference: String,
    pub name: String,
    pub client: usize,
    pub service_type: &'static str,
    pub state: &'static str,
    pub ip: String,
}

#[derive(Debug, Clone)]
pub struct Licence {
    /// What the portal shows in the `Licence` column.
    pub reference: String,
    /// What the simulator's URLs name the licence by: its reference, except
    /// for a twin (`plant_twins`), which keeps its own.
    pub key: String,
    pub licence_type: &'static str,
    pub sda: String,
    pub name: String,
    pub accountcode: String,
    pub service: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub clients: Vec<Client>,
    pub services: Vec<Service>,
    pub licences: Vec<Licence>,
    /// Indexes, so that a large dataset answers as fast as a small one.
    by_licence: HashMap<String, usize>,
    by_service: HashMap<String, usize>,
    of_service: Vec<Vec<usize>>,
}

pub const METACENTREX: &str = "MetaCentrex";
const OTHER_TYPES: [&str; 3] = ["Trunk SIP", "Accès Fibre", "Numéro SVA"];
const COMPANY_WORDS: [&str; 12] = [
    "Boulangerie",
    "Cabinet",
    "Garage",
    "Pharmacie",
    "Agence",
    "Atelier",
    "Clinique",
    "Hôtel",
    "Librairie",
    "Studio",
    "Transports",
    "Menuiserie",
];
const TOWNS: [&str; 8] = [
    "Lyon", "Nantes", "Lille", "Rennes", "Dijon", "Tours", "Nîmes", "Amiens",
];

impl Dataset {
    pub fn generate(spec: &DatasetSpec) -> Dataset {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut ds = Dataset::default();
        let mut next_ref: u32 = 4021;
        let mut next_licence: u32 = 172_900;
        for c in 0..spec.clients {
            // Every third client's reference extends the previous one by a
            // digit, so that a loose search for the shorter one lists both.
            let reference = if c % 3 == 1 {
                format!("{}{}", ds.clients[c - 1].reference, rng.random_range(1..10))
            } else {
                next_ref += rng.random_range(3..40);
                next_ref.to_string()
            };
            let town = TOWNS[rng.random_range(0..TOWNS.len())];
            let name = format!(
                "{} {} {}",
                COMPANY_WORDS[rng.random_range(0..COMPANY_WORDS.len())],
                town,
                c + 1
            );
            ds.clients.push(Client {
                reference: reference.clone(),
                name,
                site: format!("Siège {town}"),
            });
            let metacentrex_services = if c % 4 == 2 { 2 } else { 1 };
            let other_services = 1 + rng.random_range(0..2);
            let mut meta_ids = Vec::new();
            for s in 0..(metacentrex_services + other_services) {
                let service_type = if s < metacentrex_services {
                    METACENTREX
                } else {
                    OTHER_TYPES[rng.random_range(0..OTHER_TYPES.len())]
                };
                let id = ds.services.len();
                if service_type == METACENTREX {
                    meta_ids.push(id);
                }
                ds.services.push(Service {
                    reference: format!("SRV{:06}", 310_000 + id * 7 + rng.random_range(0..7)),
                    name: format!("{service_type} {}", s + 1),
                    client: c,
                    service_type,
                    state: if rng.random_range(0..10) == 0 {
                        "Suspendu"
                    } else {
                        "Actif"
                    },
                    ip: format!("10.{}.{}.{}", c % 250, s, rng.random_range(1..250)),
                });
            }
            for l in 0..spec.licences_per_client {
                let service = meta_ids[l % meta_ids.len()];
                next_licence += rng.random_range(1..12);
                let licence_type = match rng.random_range(0..10) {
                    0 => "Licence SVI",
                    1 => "Licence fax entreprise",
                    _ => "Licence simple",
                };
                let sda = if licence_type != "Licence simple" || rng.random_range(0..8) == 0 {
                    String::new()
                } else {
                    let n: u32 = rng.random_range(0..1_000_000);
                    format!(
                        "01 84 {:02} {:02} {:02}",
                        n / 10_000,
                        (n / 100) % 100,
                        n % 100
                    )
                };
                let name = match licence_type {
                    "Licence SVI" => format!("Utilisateur SVI Standard - {}", l + 1),
                    "Licence fax entreprise" => format!("Utilisateur FaxToMail Entr. - {}", l + 1),
                    _ => format!("Utilisateur {}", l + 1),
                };
                ds.licences.push(Licence {
                    reference: format!("FPC{next_licence}"),
                    key: format!("FPC{next_licence}"),
                    licence_type,
                    sda,
                    name,
                    accountcode: (130_000 + rng.random_range(0..900_000)).to_string(),
                    service,
                });
            }
        }
        ds.by_licence = ds
            .licences
            .iter()
            .enumerate()
            .map(|(i, l)| (l.key.clone(), i))
            .collect();
        ds.by_service = ds
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.reference.clone(), i))
            .collect();
        ds.of_service = vec![Vec::new(); ds.services.len()];
        for (i, l) in ds.licences.iter().enumerate() {
            ds.of_service[l.service].push(i);
        }
        ds
    }

    /// Plants the portal's worst trap: one licence reference shown for two
    /// phones. The second licence of the first client becomes a twin of its
    /// first (same service, another SDA), and the first licence of the third
    /// client shows the reference of the first client's third (another
    /// client). Twins keep their own keys, so their pages stay apart.
    pub fn plant_twins(&mut self) {
        let first = &self.of_service[self.licences[0].service];
        let (a, b) = (first[0], first[1]);
        let other = (0..self.licences.len())
            .find(|&i| self.services[self.licences[i].service].client == 2)
            .expect("a third client");
        let c = (0..self.licences.len())
            .filter(|&i| self.services[self.licences[i].service].client == 0)
            .nth(2)
            .expect("three licences for the first client");
        for (twin, of, sda) in [(b, a, "01 84 99 00 01"), (other, c, "01 84 99 00 02")] {
            self.licences[twin].reference = self.licences[of].reference.clone();
            self.licences[twin].licence_type = self.licences[of].licence_type;
            self.licences[twin].sda = sda.to_string();
        }
        if self.licences[a].sda.is_empty() {
            self.licences[a].sda = "01 84 99 00 00".into();
        }
    }

    /// Makes the first pair of twins alike in every column: the same number
    /// and the same name; only their pages (their account codes) differ.
    pub fn make_twins_identical(&mut self) {
        let first = &self.of_service[self.licences[0].service];
        let (a, b) = (first[0], first[1]);
        self.licences[b].sda = self.licences[a].sda.clone();
        self.licences[b].name = self.licences[a].name.clone();
    }

    /// Whether a licence's phone is registered before any reset: all but
    /// one in five.
    pub fn initially_connected(&self, licence: usize) -> bool {
        licence % 5 != 4
    }

    /// Whether a licence's phone never registers again after a reset
    /// (nobody reconfigured it): one in seven.
    pub fn never_reconnects(&self, licence: usize) -> bool {
        licence % 7 == 3
    }

    pub fn client_of_service(&self, service: usize) -> &Client {
        &self.clients[self.services[service].client]
    }

    /// The licence a URL names, by its key.
    pub fn licence_index(&self, key: &str) -> Option<usize> {
        self.by_licence.get(key).copied()
    }

    pub fn service_index(&self, reference: &str) -> Option<usize> {
        self.by_service.get(reference).copied()
    }

    /// Licences of one service, in the order the users table shows them.
    pub fn licences_of(&self, service: usize) -> &[usize] {
        &self.of_service[service]
    }

    /// Writes the dataset as CSV (`client_ref,service_ref,licence,licence_type,sda,name`).
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record([
            "client_ref",
            "service_ref",
            "licence",
            "licence_type",
            "sda",
            "name",
        ])?;
        for l in &self.licences {
            let service = &self.services[l.service];
            w.write_record([
                self.clients[service.client].reference.as_str(),
                &service.reference,
                &l.reference,
                l.licence_type,
                &l.sda,
                &l.name,
            ])?;
        }
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_dataset_and_traps_present() {
        let spec = DatasetSpec {
            seed: 7,
            clients: 12,
            licences_per_client: 6,
        };
        let a = Dataset::generate(&spec);
        let b = Dataset::generate(&spec);
        assert_eq!(
            a.licences.iter().map(|l| &l.reference).collect::<Vec<_>>(),
            b.licences.iter().map(|l| &l.reference).collect::<Vec<_>>()
        );
        let refs: Vec<&str> = a.clients.iter().map(|c| c.reference.as_str()).collect();
        assert!(
            refs.iter()
                .any(|r| refs.iter().any(|o| o != r && o.starts_with(r)))
        );
        assert!(a.licences.iter().any(|l| l.sda.is_empty()));
        assert!(a.services.iter().any(|s| s.service_type != METACENTREX));
        let mut unique = a.licences.iter().map(|l| &l.reference).collect::<Vec<_>>();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), a.licences.len());
    }
}
