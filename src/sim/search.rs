//! The portal's client search, as loose as the guide shows it: the client
//! must match exactly what it finds.

use super::*;

pub(super) fn search_values(v: Variant, params: &HashMap<String, String>) -> [String; 9] {
    std::array::from_fn(|i| params.get(v.names().search[i]).cloned().unwrap_or_default())
}

pub(super) fn starts_with_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .to_lowercase()
        .starts_with(&needle.trim().to_lowercase())
}

pub(super) fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .to_lowercase()
        .contains(&needle.trim().to_lowercase())
}

/// The loose filters of the search page: prefixes and substrings.
pub(super) fn search_services(ds: &Dataset, values: &[String; 9]) -> Vec<usize> {
    (0..ds.services.len())
        .filter(|&s| {
            let svc = &ds.services[s];
            let client = ds.client_of_service(s);
            let ty = pages::option_text(&pages::SERVICE_TYPES, &values[4]);
            let state = pages::option_text(&pages::SERVICE_STATES, &values[8]);
            starts_with_ci(&svc.reference, &values[0])
                && contains_ci(&client.name, &values[1])
                && starts_with_ci(&client.reference, &values[2])
                && contains_ci(&client.name, &values[3])
                && ty.is_none_or(|t| t == svc.service_type)
                && (values[6].trim().is_empty()
                    || ds
                        .licences_of(s)
                        .iter()
                        .any(|&l| starts_with_ci(&ds.licences[l].accountcode, &values[6])))
                && starts_with_ci(&svc.ip, &values[7])
                && state.is_none_or(|t| t == svc.state)
        })
        .collect()
}

pub(super) fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, bool) {
    let start = (page - 1) * size;
    let slice = items.iter().skip(start).take(size).cloned().collect();
    (slice, items.len() > start + size)
}
