from dedup import ingest
from dedup.devkit.synth import catalog_lines, dirty_dump_lines, dump_line, write_catalog_csv, write_dump_bytes
from dedup.settings import default_table


def urls(stem: str, host: str = "http://h.example") -> str:
    return ";".join(
        [f"{host}/{stem}-tok.jpeg"] + [f"{host}/{stem}-{size}-tok.jpeg" for size in ("200x200", "400x400", "800x800")]
    )


def read(spark, path, **settings):
    table = default_table("ingest", **settings)
    rows = ingest.validate(ingest.read_catalog(spark, str(path), table), table).cache()
    return ingest.split(rows)


def test_size_preference_order():
    assert ingest.size_preference("200x200") == ["200x200", "400x400", "800x800", ""]
    assert ingest.size_preference("800x800") == ["800x800", "", "400x400", "200x200"]
    assert ingest.size_preference("original") == ["", "200x200", "400x400", "800x800"]


def test_dirty_lines_are_rejected_with_reasons(spark, tmp_path):
    good = [
        {
            "productId": "GOOD000000000001",
            "imageUrlStr": urls("a"),
            "productFamily": "GOOD000000000001, FAM0000000000002",
        },
        {"productId": "GOOD000000000002", "imageUrlStr": urls("b"), "categories": "Apparels>Women>Tops"},
    ]
    dirty = [
        "STRAY00000000001,t,d," + ",".join(["x"] * 50),  # 54 fields
        dump_line('"text, not an id"', "t", "d", urls("c")),
        dump_line("GOOD000000000001", "again", "d", urls("a")),
        dump_line("NOURL00000000001", "t", "d", ""),
        dump_line("FTPURL0000000001", "t", "d", "ftp://x/a-200x200-t.jpeg"),
        dump_line("", "t", "d", urls("d")),
        "SHORT00000000001,t,d",
        dump_line("CRLF000000000001", "t", "d", urls("e")) + "\r",
    ]
    path = tmp_path / "dump.csv"
    write_catalog_csv(good, path, dirty)
    result = read(spark, path)

    products = {r["productId"]: r for r in result.products.collect()}
    assert set(products) == {"GOOD000000000001", "GOOD000000000002", "CRLF000000000001"}
    assert products["GOOD000000000001"]["image_url"] == "http://h.example/a-200x200-tok.jpeg"
    assert products["GOOD000000000001"]["family"] == ["GOOD000000000001", "FAM0000000000002"]
    assert products["GOOD000000000002"]["family"] == []

    reasons = sorted(r["reason"] for r in result.rejects.collect())
    assert reasons == sorted(
        [
            "malformed_line",
            "invalid_product_id",
            "duplicate_product_id",
            "missing_image_url",
            "no_usable_image_url",
            "missing_product_id",
            "malformed_line",
        ]
    )
    raw = {r["reason"]: r["raw_line"] for r in result.rejects.collect()}
    assert raw["invalid_product_id"].startswith('"text, not an id"')
    # every line is accounted for exactly once
    assert result.products.count() + result.rejects.count() == len(good) + len(dirty)


def test_dirty_dump_rejects_each_bad_line_and_leaves_good_lines_alone(spark, tmp_path):
    good = [{"productId": f"GOOD{i:012d}", "title": f"t{i}", "imageUrlStr": urls(f"g{i}")} for i in range(5)]
    good[1]["description"] = "a long description, " * 50_000  # a 1 MB field is long, not bad
    write_catalog_csv(good, tmp_path / "clean.csv")
    dirty = dirty_dump_lines("http://h.example", good[0]["productId"])
    header, *rows = catalog_lines(good)
    mixed = [header.encode()]
    for i, row in enumerate(rows):  # the bad lines between the good ones, the whole file in CRLF
        mixed += [row.encode(), *(line for line, _ in dirty[i :: len(rows)])]
    write_dump_bytes(mixed, tmp_path / "dirty.csv", newline=b"\r\n")

    clean, result = read(spark, tmp_path / "clean.csv"), read(spark, tmp_path / "dirty.csv")

    def products(ingested):
        return sorted(tuple(r) for r in ingested.products.drop("row_id").collect())

    assert len(products(result)) == len(good) and products(result) == products(clean)
    rejects = result.rejects.collect()
    assert sorted(r["reason"] for r in rejects) == sorted(reason for _, reason in dirty if reason)
    assert all(r["raw_line"] for r in rejects)  # each with the line to look at
    assert result.products.count() + len(rejects) == len(good) + sum(1 for _, reason in dirty if reason)


def test_url_fallback_and_filters(spark, tmp_path):
    rows = [
        {"productId": "P1", "imageUrlStr": "http://h/a-tok.jpeg;http://h/a-800x800-tok.jpeg", "title": "Red Shirt"},
        {"productId": "P2", "imageUrlStr": " http://h/b-400x400-tok.jpeg ", "categories": "Footwear>Men", "title": "x"},
        {"productId": "P3", "imageUrlStr": "http://h/only-original.jpeg", "categories": "Apparels>Men", "title": "x"},
    ]
    path = tmp_path / "dump.csv"
    write_catalog_csv(rows, path)
    products = {r["productId"]: r["image_url"] for r in read(spark, path).products.collect()}
    assert products == {
        "P1": "http://h/a-800x800-tok.jpeg",
        "P2": "http://h/b-400x400-tok.jpeg",
        "P3": "http://h/only-original.jpeg",
    }
    original = {r["productId"]: r["image_url"] for r in read(spark, path, image_size="original").products.collect()}
    assert original["P1"] == "http://h/a-tok.jpeg"

    filtered = read(spark, path, category_prefix="Apparels>", title_regex="")
    assert {r["productId"] for r in filtered.products.collect()} == {"P3"}
    assert {r["reason"] for r in filtered.rejects.collect()} == {"filtered_category"}
    titled = read(spark, path, title_regex="(?i)shirt")
    assert {r["productId"] for r in titled.products.collect()} == {"P1"}


def test_json_lines(spark, tmp_path):
    path = tmp_path / "dump.jsonl"
    path.write_text('{"productId": "J1", "imageUrlStr": "http://h/a-200x200-t.jpeg"}\n{not json\n{"productId": "J2"}\n')
    result = read(spark, path, format="jsonl")
    assert [r["productId"] for r in result.products.collect()] == ["J1"]
    assert sorted(r["reason"] for r in result.rejects.collect()) == ["malformed_line", "missing_image_url"]
