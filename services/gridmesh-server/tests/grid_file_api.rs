//! Grid files over real HTTP and a real PostgreSQL: a utility imports a whole grid (CSV or
//! JSON), the same file again changes nothing, a dry run writes nothing, a bad file is refused
//! whole with every problem named, the export imports back unchanged, and only utilities and
//! operators change the grid.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use common::{Server, mqtt_url, user};
use gridmesh_core::{GridConnection, Role, Site, SiteId, Watts};
use sqlx::PgPool;

const GRID: &str = "code,kind,parent,name,import_limit_kw,export_limit_kw
T1,transformer,,\"Oak Lane substation, north\",400,250
F1,feeder,T1,Feeder 1,150,100.5
F2,feeder,T1,Feeder 2,80,60
";

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_grid_file_imports_once_exports_back_and_bad_files_change_nothing(pool: PgPool) {
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let api = server.client();
    let (_, utility) = user(&pool, "grid co", Role::Utility).await;
    let (_, regulator) = user(&pool, "audit", Role::Regulator).await;
    let (owner_id, prosumer) = user(&pool, "home", Role::Prosumer).await;
    let import = |auth: &str, query: &str, content_type: &str, body: &str| {
        api.post(&format!("/v1/grid/import{query}"))
            .auth(auth)
            .header("Content-Type", content_type)
            .body(body.to_owned())
    };

    // Only utilities and operators change the grid.
    assert_eq!(import(&prosumer, "", "text/csv", GRID).await.status, 403);
    assert_eq!(import(&regulator, "", "text/csv", GRID).await.status, 403);

    // A dry run says what would change and writes nothing.
    let dry = import(&utility, "?dry_run=true", "text/csv", GRID).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    let dry = dry.json();
    assert_eq!((dry["dry_run"].as_bool(), dry["created"].as_u64()), (Some(true), Some(3)));
    assert!(gridmesh_db::stored_grid(&pool).await.unwrap().is_empty());

    let first = import(&utility, "", "text/csv", GRID).await.json();
    assert_eq!((first["created"].as_u64(), first["updated"].as_u64()), (Some(3), Some(0)), "{first}");
    let again = import(&utility, "", "text/csv", GRID).await.json();
    assert_eq!(
        (again["created"].as_u64(), again["updated"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(0), Some(3))
    );
    let exported = api.get("/v1/grid/export").auth(&regulator).await;
    assert_eq!(exported.status, 200);
    assert_eq!(exported.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(exported.body, GRID);
    let json = api.get("/v1/grid/export?format=json").auth(&utility).await.body;
    let again = import(&utility, "", "application/json", &json).await.json();
    assert_eq!(again["unchanged"].as_u64(), Some(3), "{again}");
    assert_eq!(api.get("/v1/grid/export").auth(&prosumer).await.status, 403);

    // A home on Feeder 2 draws more than the feeder's new limit: a warning, not a refusal.
    let f2 = gridmesh_db::stored_grid(&pool)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code.as_deref() == Some("F2"))
        .unwrap();
    let site = Site {
        id: SiteId::new_random(),
        owner: owner_id,
        feeder: Some(f2.node.id),
        name: "home".into(),
        location: None,
        rated_pv: Watts(4_000),
        pv_orientation: None,
        battery: None,
        grid: GridConnection { import_limit: Watts(25_000), export_limit: Watts(4_000) },
    };
    gridmesh_db::insert_site(&pool, &site).await.unwrap();
    let lower = GRID.replace("Feeder 2,80,60", "Feeder 2,20,60");
    let changed = import(&utility, "", "text/csv", &lower).await.json();
    assert_eq!(changed["updated"].as_u64(), Some(1), "{changed}");
    assert_eq!(changed["changes"][0]["code"], "F2");
    assert_eq!(changed["changes"][0]["changes"][0], "import_limit_kw 80 -> 20");
    assert!(
        changed["warnings"][0]
            .as_str()
            .unwrap()
            .contains("below the sum of its homes' connection limits (25 kW)"),
        "{changed}"
    );

    // Bad files are refused whole, every problem named, nothing written.
    let before = api.get("/v1/grid/export").auth(&utility).await.body;
    let bad = "code,kind,parent,name,import_limit_kw,export_limit_kw
T1,transformer,,T,999,250
F3,feeder,T9,Feeder 3,10,10
F3,feeder,T1,Feeder 3 again,10,10
";
    let refused = import(&utility, "", "text/csv", bad).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let detail = refused.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("nothing was changed")
            && detail.contains("\"T9\"")
            && detail.contains("code \"F3\" is used by more than one node"),
        "{detail}"
    );
    let negative = import(&utility, "", "text/csv", &GRID.replace(",150,", ",-150,")).await;
    assert!(
        negative.json()["detail"].as_str().unwrap().contains("line 3: import_limit_kw"),
        "{}",
        negative.body
    );
    let with_homes = import(&utility, "", "text/csv", &GRID.replace("F2,feeder", "F2,transformer")).await;
    assert!(
        with_homes.json()["detail"].as_str().unwrap().contains("F2: kind: homes are connected"),
        "{}",
        with_homes.body
    );
    let not_a_file = import(&utility, "", "application/json", "{\"nodes\": [{\"code\": 1}]}").await;
    assert_eq!(not_a_file.status, 422);
    assert_eq!(api.get("/v1/grid/export").auth(&utility).await.body, before);
    server.stop().await;
}
