fn main() {
    if std::env::args().nth(1).as_deref() == Some("vectors") {
        print!("{}", flightsim_p2p::vectors::render());
    }
}
