//! sqlx's `migrate!` embeds `../migrations` when kircd compiles, but on
//! stable Rust a macro cannot ask cargo to watch a folder: without this, a
//! migration added with no Rust change is missing from the next build.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
