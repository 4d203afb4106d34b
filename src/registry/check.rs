//! Whether a form's sender may notify for the provider and location the form names, answered from the
//! registry. A wrong provider or location ID is the commonest reason a notification is delayed, so each
//! problem says exactly what is wrong and what the right value might be; but registration data (a
//! provider's list of locations, which provider a location belongs to, the sender's own roles) is told only
//! to an address registered at that provider: the reply goes to the `From` address, so whoever reads it
//! holds that address. An address held by several *different people* (a shared inbox) is refused with the regulator's
//! wording and the names of the people who share it; one person holding several roles is not refused.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::Role;
use crate::ids::{EmailAddress, LocationId, ProviderId};
use crate::problem::{Problem, ProblemCode};
use crate::store::{IN_LIST_CHUNK, Store, StoreError, rows_in};

/// How many of a provider's locations a message lists before "and N more".
const LOCATIONS_LISTED: usize = 20;

/// The registry problems of one form from `sender` naming `provider_id` and `location_id` (normalised
/// answers, as in [`crate::validate::Checked::values`]). IDs that do not parse are skipped: validation has
/// already reported their format. `form_needs_location` is false for forms about the provider as a whole,
/// whose location answer (if any) is not checked.
pub async fn check(
    store: &Store,
    sender: &EmailAddress,
    form_needs_location: bool,
    provider_id: Option<&str>,
    location_id: Option<&str>,
) -> Result<Vec<Problem>, StoreError> {
    let mut db = store.pool().acquire().await?;
    check_with(&mut db, &Prefetched::default(), sender, form_needs_location, provider_id, location_id).await
}

/// The registry rows a batch of forms names, read in three queries for the whole batch instead of three per
/// form. Whatever it lacks is read when asked for.
#[derive(Debug, Default)]
pub struct Prefetched {
    roles: HashMap<String, Vec<Held>>,
    providers: HashMap<String, Option<ProviderRec>>,
    locations: HashMap<String, Option<LocationRec>>,
}

impl Prefetched {
    /// Reads the roles held under `senders` (comparison keys) and the providers and locations named (as
    /// written: those that do not parse as IDs are left out, as [`check`] skips them).
    pub async fn load<'a>(
        store: &Store,
        senders: impl IntoIterator<Item = &'a str>,
        provider_ids: impl IntoIterator<Item = &'a str>,
        location_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Prefetched, StoreError> {
        let mut db = store.pool().acquire().await?;
        let db = &mut *db;
        let mut cache = Prefetched::default();
        let senders: Vec<String> = distinct(senders.into_iter().map(str::to_string));
        for chunk in senders.chunks(IN_LIST_CHUNK) {
            cache.roles.extend(chunk.iter().map(|s| (s.clone(), Vec::new())));
            for (email, held) in roles_in(db, chunk).await? {
                cache.roles.entry(email).or_default().push(held);
            }
        }
        let providers =
            distinct(provider_ids.into_iter().filter_map(ProviderId::parse).map(|p| p.as_str().to_string()));
        for chunk in providers.chunks(IN_LIST_CHUNK) {
            cache.providers.extend(chunk.iter().map(|p| (p.clone(), None)));
            for p in providers_in(db, chunk).await? {
                cache.providers.insert(p.id.clone(), Some(p));
            }
        }
        let locations =
            distinct(location_ids.into_iter().filter_map(LocationId::parse).map(|l| l.as_str().to_string()));
        for chunk in locations.chunks(IN_LIST_CHUNK) {
            cache.locations.extend(chunk.iter().map(|l| (l.clone(), None)));
            for l in locations_in(db, chunk).await? {
                cache.locations.insert(l.id.clone(), Some(l));
            }
        }
        Ok(cache)
    }
}

fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

/// [`check`] on `db` (a filing transaction's own connection: no second connection is needed while it holds
/// SQLite's write lock), answered from `cache` where it can.
pub async fn check_with(
    db: &mut AnyConnection,
    cache: &Prefetched,
    sender: &EmailAddress,
    form_needs_location: bool,
    provider_id: Option<&str>,
    location_id: Option<&str>,
) -> Result<Vec<Problem>, StoreError> {
    let held = match cache.roles.get(sender.comparison_key()) {
        Some(held) => held.clone(),
        None => roles_in(db, &[sender.comparison_key().to_string()]).await?.into_iter().map(|(_, h)| h).collect(),
    };
    let provider_id = provider_id.and_then(ProviderId::parse);
    let location_id = if form_needs_location { location_id.and_then(LocationId::parse) } else { None };
    let provider = match &provider_id {
        Some(p) => match cache.providers.get(p.as_str()) {
            Some(found) => found.clone(),
            None => find_provider(db, p.as_str()).await?,
        },
        None => None,
    };
    let location = match &location_id {
        Some(l) => match cache.locations.get(l.as_str()) {
            Some(found) => found.clone(),
            None => find_location(db, l.as_str()).await?,
        },
        None => None,
    };
    let ctx = Ctx { sender, held: &held };
    let mut problems = Vec::new();

    // Who is sending.
    let people: BTreeMap<&str, &str> = held.iter().map(|h| (h.person_id.as_str(), h.name.as_str())).collect();
    if held.is_empty() {
        problems.push(ctx.not_registered());
    } else if people.len() > 1 {
        problems.push(ctx.multiple_people(&people.values().copied().collect::<Vec<_>>()));
    }

    // The provider.
    let active_provider = match (&provider_id, &provider) {
        (Some(id), None) => {
            problems.push(ctx.unknown_provider(db, id.as_str(), location.as_ref()).await?);
            None
        }
        (Some(_), Some(p)) if p.deregistered_at.is_some() => {
            problems.push(ctx.provider_deregistered(p));
            None
        }
        (_, p) => p.as_ref(),
    };

    // The location.
    let mut location_of_provider = None;
    match (&location_id, &location) {
        (Some(id), None) => problems.push(ctx.unknown_location(db, id.as_str(), active_provider).await?),
        (Some(_), Some(l)) if l.deregistered_at.is_some() => {
            problems.push(ctx.location_deregistered(db, l, active_provider).await?)
        }
        (Some(_), Some(l)) => match active_provider {
            Some(p) if p.id != l.provider_id => problems.push(ctx.location_not_of_provider(db, l, p).await?),
            Some(_) => location_of_provider = Some(l),
            None => {}
        },
        (None, _) => {}
    }

    // Authority: only when the sender is one person and the provider is a registered one.
    if people.len() == 1
        && let Some(p) = active_provider
    {
        let here: Vec<&Held> = held.iter().filter(|h| h.provider_id == p.id).collect();
        if here.is_empty() {
            problems.push(ctx.not_at_provider(p));
        } else if let Some(l) = location_of_provider
            && !here.iter().any(|h| h.role.covers_provider() || h.location_id.as_deref() == Some(l.id.as_str()))
        {
            problems.push(ctx.manager_elsewhere(l, p, &here));
        }
    }
    Ok(problems)
}

/// One role held under the sender's address.
#[derive(Debug, Clone)]
struct Held {
    person_id: String,
    name: String,
    role: Role,
    provider_id: String,
    provider_name: Option<String>,
    location_id: Option<String>,
    location_name: Option<String>,
}

#[derive(Debug, Clone)]
struct ProviderRec {
    id: String,
    name: String,
    deregistered_at: Option<i64>,
}

#[derive(Debug, Clone)]
struct LocationRec {
    id: String,
    name: String,
    postcode: Option<String>,
    provider_id: String,
    provider_name: String,
    deregistered_at: Option<i64>,
}

impl LocationRec {
    /// "Oakfield House, LS1 4AB": how a provider recognises its location.
    fn label(&self) -> String {
        match &self.postcode {
            Some(pc) => format!("{}, {pc}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The roles held under each of `emails` (comparison keys), as (email, role) in a stable order.
async fn roles_in(db: &mut AnyConnection, emails: &[String]) -> Result<Vec<(String, Held)>, StoreError> {
    let select = "SELECT pe.email, pe.person_id, pe.name, pe.role, pe.provider_id, pe.location_id, \
         pr.name AS provider_name, l.name AS location_name FROM people pe \
         LEFT JOIN providers pr ON pr.provider_id = pe.provider_id \
         LEFT JOIN locations l ON l.location_id = pe.location_id";
    let order = " ORDER BY pe.email, pe.person_id, pe.provider_id, pe.location_id";
    let rows = rows_in(db, select, "pe.email", emails, order).await?;
    let mut held = Vec::with_capacity(rows.len());
    for r in rows {
        let role: String = r.try_get("role")?;
        // The importer writes only known roles; a row edited by hand to something else grants nothing.
        let Some(role) = Role::parse(&role) else { continue };
        let location_id: String = r.try_get("location_id")?;
        held.push((
            r.try_get("email")?,
            Held {
                person_id: r.try_get("person_id")?,
                name: r.try_get("name")?,
                role,
                provider_id: r.try_get("provider_id")?,
                provider_name: r.try_get("provider_name")?,
                location_id: Some(location_id).filter(|l| !l.is_empty()),
                location_name: r.try_get("location_name")?,
            },
        ));
    }
    Ok(held)
}

fn provider_rec(r: &sqlx::any::AnyRow) -> Result<ProviderRec, sqlx::Error> {
    Ok(ProviderRec {
        id: r.try_get("provider_id")?,
        name: r.try_get("name")?,
        deregistered_at: r.try_get("deregistered_at")?,
    })
}

fn location_rec(r: &sqlx::any::AnyRow) -> Result<LocationRec, sqlx::Error> {
    Ok(LocationRec {
        id: r.try_get("location_id")?,
        name: r.try_get("name")?,
        postcode: r.try_get("postcode")?,
        provider_id: r.try_get("provider_id")?,
        provider_name: r.try_get("provider_name")?,
        deregistered_at: r.try_get("deregistered_at")?,
    })
}

const PROVIDER_COLUMNS: &str = "SELECT provider_id, name, deregistered_at FROM providers";
const LOCATION_COLUMNS: &str = "SELECT l.location_id, l.name, l.postcode, l.provider_id, p.name AS provider_name, \
     l.deregistered_at FROM locations l JOIN providers p ON p.provider_id = l.provider_id";

async fn find_provider(db: &mut AnyConnection, id: &str) -> Result<Option<ProviderRec>, StoreError> {
    Ok(providers_in(db, &[id.to_string()]).await?.pop())
}

async fn providers_in(db: &mut AnyConnection, ids: &[String]) -> Result<Vec<ProviderRec>, StoreError> {
    let rows = rows_in(db, PROVIDER_COLUMNS, "provider_id", ids, "").await?;
    Ok(rows.iter().map(provider_rec).collect::<Result<_, _>>()?)
}

async fn find_location(db: &mut AnyConnection, id: &str) -> Result<Option<LocationRec>, StoreError> {
    Ok(locations_in(db, &[id.to_string()]).await?.pop())
}

async fn locations_in(db: &mut AnyConnection, ids: &[String]) -> Result<Vec<LocationRec>, StoreError> {
    let rows = rows_in(db, LOCATION_COLUMNS, "l.location_id", ids, "").await?;
    Ok(rows.iter().map(location_rec).collect::<Result<_, _>>()?)
}

/// "these are this provider's locations: ...", the registered ones, by name, at most [`LOCATIONS_LISTED`].
async fn locations_list(db: &mut AnyConnection, provider: &ProviderRec) -> Result<String, StoreError> {
    let rows = sqlx::query(
        "SELECT location_id, name, postcode FROM locations WHERE provider_id = $1 AND deregistered_at IS NULL \
         ORDER BY name, location_id",
    )
    .bind(&provider.id)
    .fetch_all(&mut *db)
    .await?;
    if rows.is_empty() {
        return Ok(format!(" Provider {} has no registered locations at present.", provider.id));
    }
    let mut items = Vec::new();
    for r in rows.iter().take(LOCATIONS_LISTED) {
        let id: String = r.try_get("location_id")?;
        let name: String = r.try_get("name")?;
        let postcode: Option<String> = r.try_get("postcode")?;
        items.push(match postcode {
            Some(pc) => format!("{id} {name} ({pc})"),
            None => format!("{id} {name}"),
        });
    }
    let more = rows.len().saturating_sub(LOCATIONS_LISTED);
    let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
    Ok(format!(" The registered locations of {} ({}) are: {}{tail}.", provider.id, provider.name, items.join("; ")))
}

/// The date an import first stopped listing something, as the provider reads dates.
fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono_tz::Europe::London).format("%-d %B %Y").to_string())
        .unwrap_or_else(|| "an earlier import".to_string())
}

/// "A", "A and B", "A, B and C".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

struct Ctx<'a> {
    sender: &'a EmailAddress,
    held: &'a [Held],
}

impl Ctx<'_> {
    fn holds_role_at(&self, provider_id: &str) -> bool {
        self.held.iter().any(|h| h.provider_id == provider_id)
    }

    /// " The address you sent from is registered for provider X (Name)." when it is registered anywhere
    /// other than `except`: the sender's own registration, told to the sender only.
    fn own_providers(&self, except: Option<&str>) -> String {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for h in self.held.iter().filter(|h| Some(h.provider_id.as_str()) != except) {
            seen.insert(&h.provider_id, h.provider_name.as_deref().unwrap_or(""));
        }
        if seen.is_empty() {
            return String::new();
        }
        let items: Vec<String> = seen
            .iter()
            .take(5)
            .map(|(id, name)| if name.is_empty() { (*id).to_string() } else { format!("{id} ({name})") })
            .collect();
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        if seen.len() == 1 {
            format!(
                " The address you sent from is registered for provider {}; if the form is about that provider, \
                 use its ID.",
                items.join("")
            )
        } else {
            format!(
                " The address you sent from is registered for providers {}; if the form is about one of them, use \
                 that provider's ID.",
                and_list(&items)
            )
        }
    }

    fn not_registered(&self) -> Problem {
        Problem::new(ProblemCode::SenderNotRegistered)
            .value(self.sender.as_str())
            .message(format!(
                "This email came from {}, which is not an address we hold for a registered person (a nominated \
             individual, registered manager, responsible individual, partner or a delegate they have named), so \
             we cannot accept a notification from it.",
                self.sender.as_str()
            ))
            .hint(
                "Send the form again from the email address we hold for you. If you are not a registered person, ask \
             your provider's nominated individual to name you as a delegate. If your registered address has \
             changed, submit a change of contact details form from the address we hold first.",
            )
    }

    fn multiple_people(&self, names: &[&str]) -> Problem {
        let names = and_list(names);
        Problem::new(ProblemCode::EmailMultipleRoles)
            .value(self.sender.as_str())
            .message(format!(
                "Email Address held by Multiple roles: {} is the address we hold for more than one person \
                 ({names}), so we cannot tell which registered person sent this form.",
                self.sender.as_str()
            ))
            .hint(format!(
                "Each registered person needs an email address of their own. Submit a change of contact details \
                 form so that each of {names} has a personal address, such as firstname.lastname@provider.co.uk, \
                 then send this form again from the new address of the person it comes from."
            ))
    }

    async fn unknown_provider(
        &self,
        db: &mut AnyConnection,
        id: &str,
        location: Option<&LocationRec>,
    ) -> Result<Problem, StoreError> {
        let mut message = format!("The provider ID {id} is not one we hold.");
        // Which provider a location belongs to is told only to someone registered at that provider.
        if let Some(l) = find_location(db, id).await? {
            if self.holds_role_at(&l.provider_id) {
                message.push_str(&format!(
                    " {id} is the ID of a location, {}; the provider ID of that location is {} ({}).",
                    l.name, l.provider_id, l.provider_name
                ));
            } else {
                message.push_str(&format!(" {id} is a location ID, not a provider ID."));
            }
        } else if let Some(l) = location.filter(|l| l.deregistered_at.is_none() && self.holds_role_at(&l.provider_id)) {
            message.push_str(&format!(
                " The location on the form, {} ({}), is registered to provider {} ({}).",
                l.id, l.name, l.provider_id, l.provider_name
            ));
        } else {
            message.push_str(&self.own_providers(None));
        }
        Ok(Problem::new(ProblemCode::UnknownProvider).field("provider_id").value(id).message(message).hint(
            "Check the provider ID on your registration certificate (it looks like 1-101641531; NHS trusts use \
             their 3-character code, like RX1), correct it on the form and send the form again.",
        ))
    }

    fn provider_deregistered(&self, p: &ProviderRec) -> Problem {
        let since = p.deregistered_at.map(day).unwrap_or_default();
        Problem::new(ProblemCode::ProviderDeregistered)
            .field("provider_id")
            .value(&p.id)
            .message(format!(
                "Provider {} ({}) is no longer registered: it has been off the register since {since}.{}",
                p.id,
                p.name,
                self.own_providers(Some(&p.id))
            ))
            .hint(
                "If your organisation changed its legal entity, it has a new provider ID, printed on its new \
                 registration certificate: put that on the form and send it again.",
            )
    }

    async fn unknown_location(
        &self,
        db: &mut AnyConnection,
        id: &str,
        provider: Option<&ProviderRec>,
    ) -> Result<Problem, StoreError> {
        let mut message = format!("The location ID {id} is not one we hold.");
        if let Some(p) = find_provider(db, id).await? {
            if self.holds_role_at(&p.id) {
                message.push_str(&format!(" {id} is the provider ID of {}, not a location ID.", p.name));
            } else {
                message.push_str(&format!(" {id} is a provider ID, not a location ID."));
            }
        }
        if let Some(p) = provider.filter(|p| self.holds_role_at(&p.id)) {
            message.push_str(&locations_list(db, p).await?);
        }
        Ok(Problem::new(ProblemCode::UnknownLocation).field("location_id").value(id).message(message).hint(
            "Use the location ID of the registered location where the event happened, from its registration \
             certificate (it looks like 1-1000210669; NHS sites use a 5-character code, like RX1CC).",
        ))
    }

    async fn location_deregistered(
        &self,
        db: &mut AnyConnection,
        l: &LocationRec,
        provider: Option<&ProviderRec>,
    ) -> Result<Problem, StoreError> {
        let since = l.deregistered_at.map(day).unwrap_or_default();
        let mut message = format!(
            "Location {} ({}) is no longer registered: it has been off the register since {since}.",
            l.id,
            l.label()
        );
        if let Some(p) = provider.filter(|p| self.holds_role_at(&p.id)) {
            message.push_str(&locations_list(db, p).await?);
        }
        Ok(Problem::new(ProblemCode::LocationDeregistered).field("location_id").value(&l.id).message(message).hint(
            "Use the ID of the registered location where the event happened. If the service moved or re-registered, \
             it has a new location ID, printed on its new registration certificate.",
        ))
    }

    async fn location_not_of_provider(
        &self,
        db: &mut AnyConnection,
        l: &LocationRec,
        p: &ProviderRec,
    ) -> Result<Problem, StoreError> {
        let mut message = format!("Location {} is not one of the locations of provider {} ({}).", l.id, p.id, p.name);
        if self.holds_role_at(&p.id) {
            message.push_str(&locations_list(db, p).await?);
        }
        if self.holds_role_at(&l.provider_id) {
            message.push_str(&format!(
                " {} ({}) is a location of provider {} ({}), where you are also registered: if the form is about \
                 that location, correct the provider ID instead.",
                l.id,
                l.label(),
                l.provider_id,
                l.provider_name
            ));
        }
        Ok(Problem::new(ProblemCode::LocationNotOfProvider).field("location_id").value(&l.id).message(message).hint(
            format!(
                "Put the ID of the location of {} where the event happened on the form, and send it again.",
                p.name
            ),
        ))
    }

    fn not_at_provider(&self, p: &ProviderRec) -> Problem {
        Problem::new(ProblemCode::SenderNotAtProvider)
            .value(self.sender.as_str())
            .message(format!(
                "The address {} is not registered for any role at provider {} ({}), so it cannot notify for that \
                 provider.{}",
                self.sender.as_str(),
                p.id,
                p.name,
                self.own_providers(Some(&p.id))
            ))
            .hint(format!(
                "Ask a registered person of {} (its nominated individual or the registered manager of the \
                 location) to send the form, or to name you as a delegate of that provider.",
                p.name
            ))
    }

    fn manager_elsewhere(&self, l: &LocationRec, p: &ProviderRec, here: &[&Held]) -> Problem {
        let managed: Vec<String> = here
            .iter()
            .filter_map(|h| {
                let id = h.location_id.as_deref()?;
                Some(match h.location_name.as_deref() {
                    Some(name) => format!("{name} ({id})"),
                    None => id.to_string(),
                })
            })
            .collect();
        let managed: Vec<&str> = managed.iter().map(String::as_str).collect();
        Problem::new(ProblemCode::ManagerNotAtLocation)
            .field("location_id")
            .value(&l.id)
            .message(format!(
                "You are registered manager of {}, not of {} ({}); a registered manager notifies only for the \
                 locations they manage.",
                and_list(&managed),
                l.name,
                l.id
            ))
            .hint(format!(
                "Ask the registered manager of {}, or a person registered for the whole of {} (its nominated \
                 individual, responsible individual or partner, or a delegate they have named), to send the form. \
                 If you now manage {} too, submit a change of registered details first.",
                l.name, p.name, l.name
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        assert_eq!(and_list(&["A"]), "A");
        assert_eq!(and_list(&["A", "B"]), "A and B");
        assert_eq!(and_list(&["A", "B", "C"]), "A, B and C");
    }

    #[test]
    fn days_are_london_dates() {
        // 2026-03-31 23:30 UTC is 1 April in London (BST).
        assert_eq!(day(1_774_999_800_000), "1 April 2026");
    }
}
