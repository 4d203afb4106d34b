//! A made-up registry for the demo and the tests: care homes, home-care agencies, GP and dental practices
//! and NHS trusts in real English towns, with the awkward cases the checks must get right planted at known
//! places (a nominated individual who also manages a small service, a manager of two locations, a shared
//! `manager@` inbox, a delegate, NHS codes, a deregistered provider and location). The same seed gives the
//! same bytes, from a splitmix64 generator of its own (no dependency, stable across platforms). Addresses
//! use `.example` domains and telephone numbers from Ofcom's ranges reserved for drama, so nothing generated
//! can reach a real person.

use std::collections::HashSet;
use std::fmt::Write as _;

/// Active providers and locations in the default demo registry.
pub const DEFAULT_PROVIDERS: usize = 2_000;
pub const DEFAULT_LOCATIONS: usize = 5_000;

/// Providers and locations planted for the samples (active ones).
const PLANTED_PROVIDERS: usize = 6;
const PLANTED_LOCATIONS: usize = 14;

/// The generated registry: the CSV texts to import and the identities to test with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthetic {
    pub seed: u64,
    /// Today's care directory in the public layout: byte-order mark, a 3-line preamble, CRLF line ends.
    pub care_directory: String,
    /// An earlier directory in the fuller active-locations layout (provider types, nominated individuals),
    /// listing also the provider and locations since deregistered. Import it, then `care_directory`, to
    /// have deregistered IDs in the registry.
    pub earlier_care_directory: String,
    /// The people file (Postroom's layout): one row per role held.
    pub people: String,
    pub samples: Samples,
}

/// A person holding a role, with the provider and a location they may notify for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub person_id: String,
    pub name: String,
    pub email: String,
    pub provider_id: String,
    pub provider_name: String,
    pub location_id: String,
    pub location_name: String,
    pub postcode: String,
}

/// A location by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleLocation {
    pub location_id: String,
    pub name: String,
    pub postcode: String,
}

/// Identities planted for the demo and the tests, one per case the registry checks tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    /// A registered manager writing about their own location: no problems.
    pub manager: Sample,
    /// Another active location of `manager`'s provider, managed by someone else: `manager_not_at_location`
    /// for `manager`, fine for `nominated_individual` and `delegate`.
    pub other_location: SampleLocation,
    /// The nominated individual of `manager`'s provider.
    pub nominated_individual: Sample,
    /// A delegate the nominated individual of `manager`'s provider named.
    pub delegate: Sample,
    /// A location of `manager`'s provider that only the earlier directory lists: `location_deregistered`.
    pub deregistered_location: SampleLocation,
    /// One person who is nominated individual and registered manager of a one-location service, under one
    /// address: several roles, one person, so no `email_multiple_roles`.
    pub ni_also_manager: Sample,
    /// A registered manager of two locations (`location_id` and `second_location`) under one address.
    pub manager_of_two: Sample,
    pub second_location: SampleLocation,
    /// `manager@...`, the registered address of two different registered managers: `email_multiple_roles`.
    pub shared_inbox: SharedInbox,
    /// The nominated individual of an NHS trust (`RX1`-style provider, `RX1CC`-style location).
    pub nhs: Sample,
    /// A provider only the earlier directory lists: `provider_deregistered`.
    pub deregistered_provider: DeregisteredProvider,
    /// An address on a registered provider's domain that belongs to nobody: `sender_not_registered`.
    pub unregistered_email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedInbox {
    pub email: String,
    pub provider_id: String,
    pub provider_name: String,
    /// The two managers sharing it: different person IDs, each managing one of `location_ids`.
    pub person_ids: [String; 2],
    pub names: [String; 2],
    pub location_ids: [String; 2],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeregisteredProvider {
    pub provider_id: String,
    pub name: String,
    pub location_id: String,
}

/// Generates a registry of `providers` active providers and `locations` active locations (raised to what
/// the planted cases need, and to one location per provider at least), the same for the same seed.
pub fn generate(seed: u64, providers: usize, locations: usize) -> Synthetic {
    let providers = providers.max(PLANTED_PROVIDERS + 1);
    let locations = locations.max(PLANTED_LOCATIONS + providers - PLANTED_PROVIDERS);
    let mut g = Gen::new(seed);

    // The planted providers first, each with the shape its sample needs.
    let p_main = g.provider(Kind::Organisation, 3);
    let p_small = g.provider(Kind::Organisation, 1);
    let p_two = g.provider(Kind::Organisation, 3);
    let p_shared = g.provider(Kind::Organisation, 2);
    let p_nhs = g.provider(Kind::Nhs, 3);
    let p_nhs2 = g.provider(Kind::Nhs, 2);
    let p_gone = g.provider(Kind::Organisation, 1);
    let gone_location = g.location(p_main);

    let samples = {
        let main = &g.providers[p_main];
        let (l0, l1, l2) = (main.locations[0], main.locations[1], main.locations[2]);
        let ni = g.person(p_main, Role::NominatedIndividual, None, None);
        let manager = g.person(p_main, Role::RegisteredManager, Some(l0), None);
        g.person(p_main, Role::RegisteredManager, Some(l1), None);
        g.person(p_main, Role::RegisteredManager, Some(l2), None);
        let delegate = g.person(p_main, Role::Delegate, None, None);

        let small = g.providers[p_small].locations[0];
        let ni_mgr = g.person(p_small, Role::NominatedIndividual, None, None);
        g.same_person(ni_mgr, Role::RegisteredManager, Some(small));

        let two = g.providers[p_two].locations.clone();
        g.person(p_two, Role::NominatedIndividual, None, None);
        let mgr_two = g.person(p_two, Role::RegisteredManager, Some(two[0]), None);
        g.same_person(mgr_two, Role::RegisteredManager, Some(two[1]));
        g.person(p_two, Role::RegisteredManager, Some(two[2]), None);

        let shared_locs = g.providers[p_shared].locations.clone();
        g.person(p_shared, Role::NominatedIndividual, None, None);
        let inbox = format!("manager@{}", g.providers[p_shared].domain);
        let sa = g.person(p_shared, Role::RegisteredManager, Some(shared_locs[0]), Some(inbox.clone()));
        let sb = g.person(p_shared, Role::RegisteredManager, Some(shared_locs[1]), Some(inbox.clone()));

        let nhs_locs = g.providers[p_nhs].locations.clone();
        let nhs_ni = g.person(p_nhs, Role::NominatedIndividual, None, None);
        for l in &nhs_locs[1..] {
            g.person(p_nhs, Role::RegisteredManager, Some(*l), None);
        }
        g.person(p_nhs2, Role::NominatedIndividual, None, None);
        let gone_loc = g.providers[p_gone].locations[0];
        // Emails are remembered, so this address is guaranteed to be nobody's.
        let main_domain = g.providers[p_main].domain.clone();
        let unregistered = g.unique_email("reception", &main_domain);

        Samples {
            manager: g.sample(manager, l0),
            other_location: g.sample_location(l1),
            nominated_individual: g.sample(ni, l1),
            delegate: g.sample(delegate, l2),
            deregistered_location: g.sample_location(gone_location),
            ni_also_manager: g.sample(ni_mgr, small),
            manager_of_two: g.sample(mgr_two, two[0]),
            second_location: g.sample_location(two[1]),
            shared_inbox: SharedInbox {
                email: inbox,
                provider_id: g.providers[p_shared].id.clone(),
                provider_name: g.providers[p_shared].name.clone(),
                person_ids: [g.people[sa].person_id.clone(), g.people[sb].person_id.clone()],
                names: [g.people[sa].name.clone(), g.people[sb].name.clone()],
                location_ids: [g.locations[shared_locs[0]].id.clone(), g.locations[shared_locs[1]].id.clone()],
            },
            nhs: g.sample(nhs_ni, nhs_locs[0]),
            deregistered_provider: DeregisteredProvider {
                provider_id: g.providers[p_gone].id.clone(),
                name: g.providers[p_gone].name.clone(),
                location_id: g.locations[gone_loc].id.clone(),
            },
            unregistered_email: unregistered,
        }
    };
    g.providers[p_gone].active = false;
    g.locations[gone_location].active = false;
    g.locations[g.providers[p_gone].locations[0]].active = false;

    // The rest at random: about 1 in 100 an NHS trust, then the extra locations skewed towards the first
    // providers, as a few large groups run many services.
    let random = providers - PLANTED_PROVIDERS;
    let first_random = g.providers.len();
    let mut counts = vec![1usize; random];
    for _ in 0..(locations - PLANTED_LOCATIONS - random) {
        let u = g.rng.unit();
        counts[((u * u * random as f64) as usize).min(random - 1)] += 1;
    }
    for count in counts {
        let kind = match g.rng.below(100) {
            0 => Kind::Nhs,
            1..=12 => Kind::Partnership,
            13..=22 => Kind::Individual,
            _ => Kind::Organisation,
        };
        let p = g.provider(kind, count);
        g.staff(p);
    }
    // Some closed services, for a realistic earlier directory: a provider now gone for every 100, and a
    // location gone for every 100 from a provider still registered.
    for _ in 0..providers / 100 {
        let p = g.provider(Kind::Organisation, 1);
        g.providers[p].active = false;
        let l = g.providers[p].locations[0];
        g.locations[l].active = false;
    }
    for _ in 0..locations / 100 {
        let p = first_random + g.rng.below(random as u64) as usize;
        let l = g.location(p);
        g.locations[l].active = false;
    }

    Synthetic {
        seed,
        care_directory: g.public_directory(),
        earlier_care_directory: g.full_directory(),
        people: g.people_csv(),
        samples,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The generator

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence everywhere. Public for the
/// other generators of test data (the backlog benchmark's).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0); the modulo bias is immaterial for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index into a collection of `n` items.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Organisation,
    Partnership,
    Individual,
    Nhs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    NominatedIndividual,
    RegisteredManager,
    ResponsibleIndividual,
    MainPartner,
    Delegate,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::NominatedIndividual => "nominated_individual",
            Role::RegisteredManager => "registered_manager",
            Role::ResponsibleIndividual => "responsible_individual",
            Role::MainPartner => "main_partner",
            Role::Delegate => "delegate",
        }
    }
}

/// What a location is: its type/sector, service type and the name patterns it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    NursingHome,
    CareHome,
    HomeCare,
    Gp,
    Dentist,
    Hospital,
}

impl Service {
    fn service_type(self) -> &'static str {
        match self {
            Service::NursingHome => "Care home service with nursing",
            Service::CareHome => "Care home service without nursing",
            Service::HomeCare => "Homecare agencies",
            Service::Gp => "Doctors/GPs",
            Service::Dentist => "Dentist",
            Service::Hospital => "Hospital",
        }
    }

    fn sector(self) -> &'static str {
        match self {
            Service::NursingHome | Service::CareHome | Service::HomeCare => "Social Care Org",
            Service::Gp => "Primary Medical Services",
            Service::Dentist => "Primary Dental Care",
            Service::Hospital => "NHS Healthcare Organisation",
        }
    }
}

struct Town {
    name: &'static str,
    area: &'static str,
    authority: &'static str,
    region: &'static str,
    /// Ofcom drama number prefix (the last 3 digits are free): nobody answers these.
    phone: &'static str,
}

struct Provider {
    id: String,
    name: String,
    kind: Kind,
    domain: String,
    town: usize,
    since: String,
    locations: Vec<usize>,
    active: bool,
    nominated_individual: Option<String>,
    main_partner: Option<String>,
}

struct Location {
    id: String,
    provider: usize,
    name: String,
    service: Service,
    street: String,
    town: usize,
    postcode: String,
    phone: String,
    since: String,
    active: bool,
    beds: Option<u64>,
    manager: Option<String>,
}

struct Person {
    person_id: String,
    name: String,
    email: String,
    phone: String,
    role: Role,
    provider: usize,
    location: Option<usize>,
}

struct Gen {
    seed: u64,
    rng: Rng,
    providers: Vec<Provider>,
    locations: Vec<Location>,
    people: Vec<Person>,
    ids: HashSet<String>,
    domains: HashSet<String>,
    emails: HashSet<String>,
    next_person: u64,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            seed,
            rng: Rng(seed),
            providers: Vec::new(),
            locations: Vec::new(),
            people: Vec::new(),
            ids: HashSet::new(),
            domains: HashSet::new(),
            emails: HashSet::new(),
            next_person: 0,
        }
    }

    /// A fresh CQC ID: `1-` and 9 or 10 digits, unique among providers and locations.
    fn cqc_id(&mut self) -> String {
        loop {
            let id = if self.rng.chance(50) {
                format!("1-{}", 100_000_000 + self.rng.below(900_000_000))
            } else {
                format!("1-{}", 1_000_000_000 + self.rng.below(1_000_000_000))
            };
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// A fresh code: `prefix` and `len` more letters or digits (NHS trust `RX1`, site `RX1CC`).
    fn code(&mut self, prefix: &str, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRTUVWXY0123456789";
        loop {
            let mut id = prefix.to_string();
            for _ in 0..len {
                id.push(CHARS[self.rng.below(CHARS.len() as u64) as usize] as char);
            }
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    fn person_name(&mut self) -> (String, String) {
        (self.rng.pick(FIRST_NAMES).to_string(), self.rng.pick(SURNAMES).to_string())
    }

    fn date(&mut self, from_year: u64) -> String {
        let year = from_year + self.rng.below(2026 - from_year);
        format!("{:02}/{:02}/{year}", 1 + self.rng.below(28), 1 + self.rng.below(12))
    }

    fn provider(&mut self, kind: Kind, locations: usize) -> usize {
        let town = self.rng.below(TOWNS.len() as u64) as usize;
        let t = &TOWNS[town];
        let (id, name) = match kind {
            Kind::Nhs => {
                let name = match self.rng.below(3) {
                    0 => format!("{} Teaching Hospitals NHS Foundation Trust", t.name),
                    1 => format!("{} and District NHS Trust", t.name),
                    _ => format!("{} Community Health Services NHS Trust", t.name),
                };
                (self.code("R", 2), name)
            }
            Kind::Organisation => {
                let name = match self.rng.below(5) {
                    0 => format!("{} Care Ltd", self.rng.pick(SURNAMES)),
                    1 => format!("{}{} Healthcare Limited", self.rng.pick(PREFIXES), self.rng.pick(ENDINGS)),
                    2 => format!("{} Care Services Ltd", t.name),
                    3 => format!("Caring Hands ({}) Ltd", t.name),
                    _ => format!("{} Homes Limited", self.rng.pick(PREFIXES)),
                };
                (self.cqc_id(), name)
            }
            Kind::Partnership => {
                let name = if self.rng.chance(60) {
                    format!("Dr {} {} and Partners", &self.rng.pick(FIRST_NAMES)[..1], self.rng.pick(SURNAMES))
                } else {
                    format!("{} & {} Dental Practice", self.rng.pick(SURNAMES), self.rng.pick(SURNAMES))
                };
                (self.cqc_id(), name)
            }
            Kind::Individual => {
                let (first, last) = self.person_name();
                let title = self.rng.pick(&["Mr", "Mrs", "Ms", "Miss"]);
                (self.cqc_id(), format!("{title} {first} {last}"))
            }
        };
        let domain = self.domain(&name, kind);
        let since = self.date(2010);
        let index = self.providers.len();
        self.providers.push(Provider {
            id,
            name,
            kind,
            domain,
            town,
            since,
            locations: Vec::new(),
            active: true,
            nominated_individual: None,
            main_partner: None,
        });
        for _ in 0..locations {
            self.location(index);
        }
        index
    }

    /// A unique `.example` domain from the provider's name: reserved (RFC 2606), so no mail can leave.
    fn domain(&mut self, name: &str, kind: Kind) -> String {
        let stop = ["ltd", "limited", "and", "partners", "nhs", "trust", "foundation", "dr", "mr", "mrs", "ms", "miss"];
        let words: Vec<String> = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::to_ascii_lowercase)
            .filter(|w| !w.is_empty() && !stop.contains(&w.as_str()))
            .take(3)
            .collect();
        let base = format!("{}{}", words.join("-"), if kind == Kind::Nhs { ".nhs" } else { "" });
        let mut n = 1;
        loop {
            let domain = if n == 1 { format!("{base}.example") } else { format!("{base}{n}.example") };
            if self.domains.insert(domain.clone()) {
                return domain;
            }
            n += 1;
        }
    }

    fn location(&mut self, provider: usize) -> usize {
        let p = &self.providers[provider];
        let (kind, provider_town, nhs_code) = (p.kind, p.town, (p.kind == Kind::Nhs).then(|| p.id.clone()));
        // Most services are in the provider's town (an NHS trust's always); groups spread further.
        let town = if p.locations.is_empty() || kind == Kind::Nhs || self.rng.chance(40) {
            provider_town
        } else {
            self.rng.below(TOWNS.len() as u64) as usize
        };
        let t = &TOWNS[town];
        let service = match kind {
            Kind::Nhs => Service::Hospital,
            Kind::Partnership if self.providers[provider].name.contains("Dental") => Service::Dentist,
            Kind::Partnership => Service::Gp,
            _ => match self.rng.below(10) {
                0..=2 => Service::NursingHome,
                3..=5 => Service::CareHome,
                _ => Service::HomeCare,
            },
        };
        let name = match service {
            Service::NursingHome | Service::CareHome => {
                let kind_word = self.rng.pick(HOME_WORDS);
                if self.rng.chance(12) {
                    format!("St {}'s {}", self.rng.pick(SAINTS), kind_word)
                } else {
                    format!("{}{} {}", self.rng.pick(PREFIXES), self.rng.pick(ENDINGS), kind_word)
                }
            }
            Service::HomeCare => match self.rng.below(3) {
                0 => format!("{} Home Care", t.name),
                1 => {
                    let provider_name = &self.providers[provider].name;
                    format!("{} - {}", provider_name.trim_end_matches(" Ltd").trim_end_matches(" Limited"), t.name)
                }
                _ => format!("{}{} Homecare", self.rng.pick(PREFIXES), self.rng.pick(ENDINGS)),
            },
            Service::Gp => {
                format!("{} {}", self.rng.pick(STREETS), self.rng.pick(&["Surgery", "Medical Centre", "Health Centre"]))
            }
            Service::Dentist => format!("{} Dental Care", self.rng.pick(STREETS)),
            Service::Hospital => format!("{} {}", t.name, self.rng.pick(HOSPITALS)),
        };
        let id = match nhs_code {
            Some(code) => self.code(&code, 2),
            None => self.cqc_id(),
        };
        let street = format!(
            "{} {} {}",
            1 + self.rng.below(180),
            self.rng.pick(STREETS),
            self.rng.pick(&["Road", "Lane", "Street", "Avenue", "Close", "Drive", "Way"])
        );
        let postcode = format!(
            "{}{} {}{}{}",
            t.area,
            1 + self.rng.below(20),
            self.rng.below(10),
            self.rng.pick(POSTCODE_LETTERS),
            self.rng.pick(POSTCODE_LETTERS)
        );
        let phone = format!("{}{:03}", t.phone, self.rng.below(1000));
        let beds = matches!(service, Service::NursingHome | Service::CareHome).then(|| 8 + self.rng.below(80));
        let since = self.date(2011);
        let index = self.locations.len();
        self.locations.push(Location {
            id,
            provider,
            name,
            service,
            street,
            town,
            postcode,
            phone,
            since,
            active: true,
            beds,
            manager: None,
        });
        self.providers[provider].locations.push(index);
        index
    }

    /// An address `local@domain` nobody has yet (a second Jane Smith gets jane.smith2@).
    fn unique_email(&mut self, local: &str, domain: &str) -> String {
        let mut n = 1;
        loop {
            let email = if n == 1 { format!("{local}@{domain}") } else { format!("{local}{n}@{domain}") };
            if self.emails.insert(email.clone()) {
                return email;
            }
            n += 1;
        }
    }

    /// A new person holding `role`; `email` given only for a shared inbox.
    fn person(&mut self, provider: usize, role: Role, location: Option<usize>, email: Option<String>) -> usize {
        let (first, last) = self.person_name();
        let name = format!("{first} {last}");
        let domain = self.providers[provider].domain.clone();
        let email = match email {
            Some(shared) => {
                self.emails.insert(shared.clone());
                shared
            }
            None => self.unique_email(&format!("{}.{}", first.to_ascii_lowercase(), slug(&last)), &domain),
        };
        self.next_person += 1;
        let person_id = format!("P{:07}", self.next_person);
        let town = &TOWNS[self.providers[provider].town];
        let phone = format!("{}{:03}", town.phone, self.rng.below(1000));
        let index = self.people.len();
        self.people.push(Person { person_id, name, email, phone, role, provider, location });
        self.note_role(index);
        index
    }

    /// The same person (same person ID, name and address) in another role.
    fn same_person(&mut self, person: usize, role: Role, location: Option<usize>) -> usize {
        let p = &self.people[person];
        let copy = Person {
            person_id: p.person_id.clone(),
            name: p.name.clone(),
            email: p.email.clone(),
            phone: p.phone.clone(),
            role,
            provider: p.provider,
            location,
        };
        let index = self.people.len();
        self.people.push(copy);
        self.note_role(index);
        index
    }

    /// Names shown in the fuller directory: nominated individual, main partner, registered manager.
    fn note_role(&mut self, person: usize) {
        let (name, role, provider, location) = {
            let p = &self.people[person];
            (p.name.clone(), p.role, p.provider, p.location)
        };
        match (role, location) {
            (Role::NominatedIndividual, _) => self.providers[provider].nominated_individual = Some(name),
            (Role::MainPartner, _) if self.providers[provider].main_partner.is_none() => {
                self.providers[provider].main_partner = Some(name)
            }
            (Role::RegisteredManager, Some(l)) => self.locations[l].manager = Some(name),
            _ => {}
        }
    }

    /// The registered people of a randomly made provider.
    fn staff(&mut self, provider: usize) {
        let locs = self.providers[provider].locations.clone();
        let head = match self.providers[provider].kind {
            Kind::Organisation | Kind::Nhs => self.person(provider, Role::NominatedIndividual, None, None),
            Kind::Individual => self.person(provider, Role::ResponsibleIndividual, None, None),
            Kind::Partnership => {
                let first = self.person(provider, Role::MainPartner, None, None);
                if self.rng.chance(50) {
                    self.person(provider, Role::MainPartner, None, None);
                }
                first
            }
        };
        let nhs = self.providers[provider].kind == Kind::Nhs;
        // A small service is often managed by the person registered for the provider.
        let head_manages = locs.len() == 1 && !nhs && self.rng.chance(35);
        // Now and then two managers share the service's `manager@` inbox, as the regulator sees.
        let shared =
            (locs.len() >= 2 && self.rng.chance(2)).then(|| format!("manager@{}", self.providers[provider].domain));
        let mut previous: Option<usize> = None;
        for (i, &l) in locs.iter().enumerate() {
            if head_manages {
                self.same_person(head, Role::RegisteredManager, Some(l));
            } else if (nhs && self.rng.chance(50)) || self.rng.chance(8) {
                // No registered manager (NHS services often, others during a vacancy).
                previous = None;
            } else if let Some(m) = previous.filter(|_| self.rng.chance(10)) {
                self.same_person(m, Role::RegisteredManager, Some(l));
                previous = None;
            } else {
                let email = shared.clone().filter(|_| i < 2);
                previous = Some(self.person(provider, Role::RegisteredManager, Some(l), email));
            }
        }
        if self.rng.chance(20) {
            self.person(provider, Role::Delegate, None, None);
        }
    }

    fn sample(&self, person: usize, location: usize) -> Sample {
        let p = &self.people[person];
        let l = &self.locations[location];
        let provider = &self.providers[p.provider];
        Sample {
            person_id: p.person_id.clone(),
            name: p.name.clone(),
            email: p.email.clone(),
            provider_id: provider.id.clone(),
            provider_name: provider.name.clone(),
            location_id: l.id.clone(),
            location_name: l.name.clone(),
            postcode: l.postcode.clone(),
        }
    }

    fn sample_location(&self, location: usize) -> SampleLocation {
        let l = &self.locations[location];
        SampleLocation { location_id: l.id.clone(), name: l.name.clone(), postcode: l.postcode.clone() }
    }

    /// The public care directory: BOM, 3 lines of preamble, then today's active locations.
    fn public_directory(&self) -> String {
        let mut out = String::from("\u{feff}");
        out.push_str("Care Quality Commission care directory (synthetic: every name, address and ID is made up)\r\n");
        let _ = write!(out, "Generated by Postroom from seed {}\r\n\r\n", self.seed);
        row(
            &mut out,
            &[
                "Name",
                "Also known as",
                "Address",
                "Postcode",
                "Phone number",
                "Service's website (if available)",
                "Service types",
                "Date of latest check",
                "Specialisms/services",
                "Provider name",
                "Local authority",
                "Region",
                "Location URL",
                "CQC Location ID (for office use only)",
                "CQC Provider ID (for office use only)",
            ],
            "\r\n",
        );
        for l in self.locations.iter().filter(|l| l.active) {
            let p = &self.providers[l.provider];
            let t = &TOWNS[l.town];
            let address = format!("{}, {}", l.street, t.name);
            let website = format!("https://www.{}", p.domain);
            let specialisms = match l.service {
                Service::NursingHome | Service::CareHome => "Caring for adults over 65 yrs, Dementia",
                Service::HomeCare => "Caring for adults over 65 yrs, Caring for adults under 65 yrs",
                Service::Gp | Service::Dentist => "",
                Service::Hospital => "Accident & emergency, Maternity",
            };
            let url = format!("https://www.cqc.org.uk/location/{}", l.id);
            row(
                &mut out,
                &[
                    &l.name,
                    "",
                    &address,
                    &l.postcode,
                    &l.phone,
                    &website,
                    l.service.service_type(),
                    &l.since,
                    specialisms,
                    &p.name,
                    t.authority,
                    t.region,
                    &url,
                    &l.id,
                    &p.id,
                ],
                "\r\n",
            );
        }
        out
    }

    /// The fuller active-locations layout, as it stood before the deregistrations.
    fn full_directory(&self) -> String {
        let mut out = String::new();
        row(
            &mut out,
            &[
                "Location ID",
                "Location HSCA start date",
                "Care home?",
                "Care homes beds",
                "Location Name",
                "Registered manager",
                "Location Type/Sector",
                "Location Local Authority",
                "Location Region",
                "Location Street Address",
                "Location Address Line 2",
                "Location City",
                "Location Postal Code",
                "Location Telephone Number",
                "Provider ID",
                "Provider Name",
                "Provider HSCA start date",
                "Provider Type/Sector",
                "Provider Nominated Individual Name",
                "Provider Main Partner Name",
                "Regulated activity - Accommodation for persons who require nursing or personal care",
                "Service type - Care home service with nursing",
                "Service user band - Older People",
            ],
            "\n",
        );
        for l in &self.locations {
            let p = &self.providers[l.provider];
            let t = &TOWNS[l.town];
            let care_home = matches!(l.service, Service::NursingHome | Service::CareHome);
            let beds = l.beds.map(|b| b.to_string()).unwrap_or_default();
            let provider_type = match p.kind {
                Kind::Organisation => "Organisation",
                Kind::Partnership => "Partnership",
                Kind::Individual => "Individual",
                Kind::Nhs => "NHS Healthcare Organisation",
            };
            row(
                &mut out,
                &[
                    &l.id,
                    &l.since,
                    if care_home { "Y" } else { "N" },
                    &beds,
                    &l.name,
                    l.manager.as_deref().unwrap_or(""),
                    l.service.sector(),
                    t.authority,
                    t.region,
                    &l.street,
                    "",
                    t.name,
                    &l.postcode,
                    &l.phone,
                    &p.id,
                    &p.name,
                    &p.since,
                    provider_type,
                    p.nominated_individual.as_deref().unwrap_or(""),
                    p.main_partner.as_deref().unwrap_or(""),
                    if care_home { "Y" } else { "" },
                    if l.service == Service::NursingHome { "Y" } else { "" },
                    if care_home || l.service == Service::HomeCare { "Y" } else { "" },
                ],
                "\n",
            );
        }
        out
    }

    fn people_csv(&self) -> String {
        let mut out = String::new();
        row(&mut out, &["person_id", "name", "role", "email", "phone", "provider_id", "location_id"], "\n");
        for p in &self.people {
            if !self.providers[p.provider].active || p.location.is_some_and(|l| !self.locations[l].active) {
                continue;
            }
            let location = p.location.map(|l| self.locations[l].id.as_str()).unwrap_or("");
            row(
                &mut out,
                &[&p.person_id, &p.name, p.role.as_str(), &p.email, &p.phone, &self.providers[p.provider].id, location],
                "\n",
            );
        }
        out
    }
}

/// A surname as it goes into an address: letters only (O'Brien -> obrien).
fn slug(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase()
}

/// One CSV row, fields quoted only where RFC 4180 needs it.
fn row(out: &mut String, fields: &[&str], end: &str) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str(end);
}

// ---------------------------------------------------------------------------------------------------------
// Word lists

const FIRST_NAMES: &[&str] = &[
    "Jane",
    "John",
    "Sarah",
    "David",
    "Emma",
    "James",
    "Claire",
    "Michael",
    "Helen",
    "Paul",
    "Rachel",
    "Mark",
    "Laura",
    "Andrew",
    "Joanne",
    "Peter",
    "Nicola",
    "Richard",
    "Karen",
    "Stephen",
    "Amina",
    "Mohammed",
    "Priya",
    "Rajesh",
    "Fatima",
    "Tariq",
    "Grace",
    "Samuel",
    "Olivia",
    "Thomas",
    "Chloe",
    "Daniel",
    "Sophie",
    "Matthew",
    "Hannah",
    "Christopher",
    "Lucy",
    "Gareth",
    "Siobhan",
    "Declan",
    "Aisha",
    "Kwame",
    "Abena",
    "Tomasz",
    "Agnieszka",
    "Ioana",
    "Florin",
    "Deborah",
    "Gary",
    "Susan",
    "Angela",
    "Neil",
    "Bernadette",
    "Yusuf",
    "Zainab",
    "Harpreet",
    "Gurpreet",
    "Niamh",
    "Callum",
    "Eilidh",
];

const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Ahmed",
    "Hussain",
    "Begum",
    "Singh",
    "Kaur",
    "Shah",
    "Okafor",
    "Mensah",
    "Adeyemi",
    "Nowak",
    "Kowalski",
    "Popescu",
    "O'Brien",
    "Murphy",
    "Kelly",
    "McCarthy",
    "Hughes",
    "Edwards",
    "Lewis",
    "Harris",
    "Martin",
    "Cooper",
    "Ward",
    "Morris",
    "Turner",
    "Hill",
    "Moore",
    "Baker",
    "Harrison",
    "Morgan",
    "Phillips",
    "Parker",
    "Bennett",
    "Chapman",
    "Fletcher",
    "Lawson",
    "Pearson",
    "Atkinson",
    "Sutcliffe",
    "Ramsbottom",
    "Ackroyd",
    "Chowdhury",
    "Rahman",
];

const PREFIXES: &[&str] = &[
    "Oak", "Willow", "Rose", "Beech", "Ash", "Elm", "Cedar", "Maple", "Holly", "Meadow", "Brook", "Fern", "Heather",
    "Ivy", "Laurel", "Orchard", "Primrose", "Bluebell", "Hazel", "Birch", "Thorn", "Clover", "Lark", "Wren", "Kings",
    "Queens", "Abbey", "Priory", "Mill", "Church",
];

const ENDINGS: &[&str] = &[
    "field", "wood", "bank", "lea", "side", "hurst", "dale", "croft", "gate", "mead", "ley", "brook", "view", "lands",
];

const HOME_WORDS: &[&str] = &[
    "House",
    "Lodge",
    "Court",
    "Manor",
    "Hall",
    "Grange",
    "Care Home",
    "Nursing Home",
    "Residential Home",
    "Care Centre",
    "Gardens",
];

const SAINTS: &[&str] = &["Anne", "Mary", "George", "Catherine", "Luke", "Margaret", "Joseph", "Teresa"];

const STREETS: &[&str] = &[
    "Church",
    "Station",
    "Victoria",
    "Park",
    "Mill",
    "High",
    "Manor",
    "Green",
    "Chapel",
    "Albert",
    "Queen",
    "King",
    "School",
    "North",
    "South",
    "West",
    "Grove",
    "Springfield",
    "Windsor",
    "York",
    "Orchard",
    "Lime",
    "Cherry",
];

const HOSPITALS: &[&str] = &["General Hospital", "Royal Infirmary", "Community Hospital", "District Hospital"];

/// Letters the inward code of a postcode may end with.
const POSTCODE_LETTERS: &[&str] =
    &["A", "B", "D", "E", "F", "G", "H", "J", "L", "N", "P", "Q", "R", "S", "T", "U", "W", "X", "Y", "Z"];

const TOWNS: &[Town] = &[
    Town { name: "Leeds", area: "LS", authority: "Leeds", region: "Yorkshire and The Humber", phone: "0113 496 0" },
    Town {
        name: "Bradford",
        area: "BD",
        authority: "Bradford",
        region: "Yorkshire and The Humber",
        phone: "01632 960",
    },
    Town {
        name: "Sheffield",
        area: "S",
        authority: "Sheffield",
        region: "Yorkshire and The Humber",
        phone: "0114 496 0",
    },
    Town { name: "York", area: "YO", authority: "York", region: "Yorkshire and The Humber", phone: "01632 960" },
    Town {
        name: "Hull",
        area: "HU",
        authority: "Kingston upon Hull, City of",
        region: "Yorkshire and The Humber",
        phone: "01632 960",
    },
    Town {
        name: "Harrogate",
        area: "HG",
        authority: "North Yorkshire",
        region: "Yorkshire and The Humber",
        phone: "01632 960",
    },
    Town { name: "Manchester", area: "M", authority: "Manchester", region: "North West", phone: "0161 496 0" },
    Town { name: "Stockport", area: "SK", authority: "Stockport", region: "North West", phone: "0161 496 0" },
    Town { name: "Liverpool", area: "L", authority: "Liverpool", region: "North West", phone: "0151 496 0" },
    Town { name: "Preston", area: "PR", authority: "Lancashire", region: "North West", phone: "01632 960" },
    Town { name: "Blackpool", area: "FY", authority: "Blackpool", region: "North West", phone: "01632 960" },
    Town { name: "Carlisle", area: "CA", authority: "Cumberland", region: "North West", phone: "01632 960" },
    Town {
        name: "Newcastle upon Tyne",
        area: "NE",
        authority: "Newcastle upon Tyne",
        region: "North East",
        phone: "0191 498 0",
    },
    Town { name: "Sunderland", area: "SR", authority: "Sunderland", region: "North East", phone: "0191 498 0" },
    Town { name: "Durham", area: "DH", authority: "County Durham", region: "North East", phone: "01632 960" },
    Town { name: "Middlesbrough", area: "TS", authority: "Middlesbrough", region: "North East", phone: "01632 960" },
    Town { name: "Birmingham", area: "B", authority: "Birmingham", region: "West Midlands", phone: "0121 496 0" },
    Town { name: "Coventry", area: "CV", authority: "Coventry", region: "West Midlands", phone: "01632 960" },
    Town { name: "Wolverhampton", area: "WV", authority: "Wolverhampton", region: "West Midlands", phone: "01632 960" },
    Town {
        name: "Stoke-on-Trent",
        area: "ST",
        authority: "Stoke-on-Trent",
        region: "West Midlands",
        phone: "01632 960",
    },
    Town { name: "Worcester", area: "WR", authority: "Worcestershire", region: "West Midlands", phone: "01632 960" },
    Town { name: "Nottingham", area: "NG", authority: "Nottingham", region: "East Midlands", phone: "0115 496 0" },
    Town { name: "Leicester", area: "LE", authority: "Leicester", region: "East Midlands", phone: "0116 496 0" },
    Town { name: "Derby", area: "DE", authority: "Derby", region: "East Midlands", phone: "01632 960" },
    Town { name: "Lincoln", area: "LN", authority: "Lincolnshire", region: "East Midlands", phone: "01632 960" },
    Town {
        name: "Northampton",
        area: "NN",
        authority: "West Northamptonshire",
        region: "East Midlands",
        phone: "01632 960",
    },
    Town { name: "Norwich", area: "NR", authority: "Norfolk", region: "East of England", phone: "01632 960" },
    Town { name: "Cambridge", area: "CB", authority: "Cambridgeshire", region: "East of England", phone: "01632 960" },
    Town { name: "Ipswich", area: "IP", authority: "Suffolk", region: "East of England", phone: "01632 960" },
    Town { name: "Chelmsford", area: "CM", authority: "Essex", region: "East of England", phone: "01632 960" },
    Town { name: "Luton", area: "LU", authority: "Luton", region: "East of England", phone: "01632 960" },
    Town { name: "Croydon", area: "CR", authority: "Croydon", region: "London", phone: "020 7946 0" },
    Town { name: "Islington", area: "N", authority: "Islington", region: "London", phone: "020 7946 0" },
    Town { name: "Lewisham", area: "SE", authority: "Lewisham", region: "London", phone: "020 7946 0" },
    Town { name: "Ealing", area: "W", authority: "Ealing", region: "London", phone: "020 7946 0" },
    Town { name: "Hackney", area: "E", authority: "Hackney", region: "London", phone: "020 7946 0" },
    Town { name: "Brighton", area: "BN", authority: "Brighton and Hove", region: "South East", phone: "01632 960" },
    Town { name: "Reading", area: "RG", authority: "Reading", region: "South East", phone: "0118 496 0" },
    Town { name: "Oxford", area: "OX", authority: "Oxfordshire", region: "South East", phone: "01632 960" },
    Town { name: "Maidstone", area: "ME", authority: "Kent", region: "South East", phone: "01632 960" },
    Town { name: "Southampton", area: "SO", authority: "Southampton", region: "South East", phone: "01632 960" },
    Town { name: "Guildford", area: "GU", authority: "Surrey", region: "South East", phone: "01632 960" },
    Town { name: "Bristol", area: "BS", authority: "Bristol, City of", region: "South West", phone: "0117 496 0" },
    Town { name: "Exeter", area: "EX", authority: "Devon", region: "South West", phone: "01632 960" },
    Town { name: "Plymouth", area: "PL", authority: "Plymouth", region: "South West", phone: "01632 960" },
    Town { name: "Truro", area: "TR", authority: "Cornwall", region: "South West", phone: "01632 960" },
    Town {
        name: "Bath",
        area: "BA",
        authority: "Bath and North East Somerset",
        region: "South West",
        phone: "01632 960",
    },
    Town { name: "Gloucester", area: "GL", authority: "Gloucestershire", region: "South West", phone: "01632 960" },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference implementation seeded with 0.
        let mut r = Rng(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        row(&mut out, &["a", "b, c", "say \"hi\"", ""], "\n");
        assert_eq!(out, "a,\"b, c\",\"say \"\"hi\"\"\",\n");
    }
}
