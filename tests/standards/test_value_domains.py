"""Value domains (WS 364 style) and GB/T 2260 region codes shipped in ``standards/data``."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml
from stdnum.cn import ric

from medfabric.standards import codes

PROVINCES = {
    "110000": "北京市",
    "120000": "天津市",
    "130000": "河北省",
    "140000": "山西省",
    "150000": "内蒙古自治区",
    "210000": "辽宁省",
    "220000": "吉林省",
    "230000": "黑龙江省",
    "310000": "上海市",
    "320000": "江苏省",
    "330000": "浙江省",
    "340000": "安徽省",
    "350000": "福建省",
    "360000": "江西省",
    "370000": "山东省",
    "410000": "河南省",
    "420000": "湖北省",
    "430000": "湖南省",
    "440000": "广东省",
    "450000": "广西壮族自治区",
    "460000": "海南省",
    "500000": "重庆市",
    "510000": "四川省",
    "520000": "贵州省",
    "530000": "云南省",
    "540000": "西藏自治区",
    "610000": "陕西省",
    "620000": "甘肃省",
    "630000": "青海省",
    "640000": "宁夏回族自治区",
    "650000": "新疆维吾尔自治区",
}

FUJIAN_CITIES = {
    "350100": "福州市",
    "350200": "厦门市",
    "350300": "莆田市",
    "350400": "三明市",
    "350500": "泉州市",
    "350600": "漳州市",
    "350700": "南平市",
    "350800": "龙岩市",
    "350900": "宁德市",
}

FUZHOU_COUNTIES = {
    "350102": "鼓楼区",
    "350103": "台江区",
    "350104": "仓山区",
    "350105": "马尾区",
    "350111": "晋安区",
    "350112": "长乐区",
    "350121": "闽侯县",
    "350122": "连江县",
    "350123": "罗源县",
    "350124": "闽清县",
    "350125": "永泰县",
    "350128": "平潭县",
    "350181": "福清市",
}


def _names(domain_id: str) -> dict[str, str]:
    return {code: e.name_zh for code, e in codes.value_domain(domain_id).items()}


def _data_dir() -> Any:
    return resources.files("medfabric.standards").joinpath("data", "value_domains")


def _gb11643_check(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character of GB 11643-1999."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(body17))
    return "10X98765432"[total % 11]


# ---------------------------------------------------------------- value domains


def test_index_and_csv_files_match() -> None:
    ids = codes.value_domain_ids()
    assert len(ids) == len(set(ids))
    csv_files = {p.name[:-4] for p in _data_dir().iterdir() if p.name.endswith(".csv")}
    assert set(ids) == csv_files


def test_index_entries_are_complete() -> None:
    raw = yaml.safe_load(_data_dir().joinpath("domains.yaml").read_text(encoding="utf-8"))
    for entry in raw:
        assert set(entry) == {"id", "name_zh", "name_en", "standard", "version"}, entry
        assert all(isinstance(v, str) and v for v in entry.values()), entry


@pytest.mark.parametrize("domain_id", codes.value_domain_ids())
def test_domain_loads_with_unique_nonempty_codes(domain_id: str) -> None:
    path = _data_dir().joinpath(f"{domain_id}.csv")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
    entries = codes.value_domain(domain_id)
    # the loader rejects duplicates; the row count check makes sure no row went missing
    assert len(entries) == len(lines) > 0
    for code, e in entries.items():
        assert code == e.code and code.strip() == code
        assert e.name_zh and e.name_en


def test_unknown_domain_is_an_error() -> None:
    with pytest.raises(codes.CodeSystemError):
        codes.value_domain("no_such_domain")


def test_sex_gb_t_2261_1() -> None:
    assert _names("sex") == {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"}


def test_marital_status_gb_t_2261_2() -> None:
    assert _names("marital_status") == {
        "10": "未婚",
        "20": "已婚",
        "21": "初婚",
        "22": "再婚",
        "23": "复婚",
        "30": "丧偶",
        "40": "离婚",
        "90": "未说明的婚姻状况",
    }


def test_id_doc_type() -> None:
    names = _names("id_doc_type")
    assert names["01"] == "居民身份证"
    assert names["03"] == "护照"
    assert names["99"] == "其他法定有效证件"


def test_ethnicity_gb_t_3304() -> None:
    names = _names("ethnicity")
    groups = {c: n for c, n in names.items() if int(c) <= 56}
    assert sorted(groups) == [f"{i:02d}" for i in range(1, 57)]
    assert all(n.endswith("族") for n in groups.values())
    assert len(set(groups.values())) == 56
    assert names["01"] == "汉族"
    assert names["03"] == "回族"
    assert names["08"] == "壮族"
    assert names["22"] == "畲族"  # the She people live mainly in Fujian
    assert names["56"] == "基诺族"
    assert set(names) - set(groups) == {"97", "98"}


def test_visit_type_keeps_core_codes() -> None:
    names = _names("visit_type")
    assert {k: names[k] for k in "1234"} == {"1": "门诊", "2": "急诊", "3": "住院", "4": "体检"}


def test_discharge_disposition() -> None:
    names = _names("discharge_disposition")
    assert set(names) == {"1", "2", "3", "4", "5", "9"}
    assert names["1"] == "医嘱离院"
    assert names["5"] == "死亡"


def test_codes_other_modules_rely_on() -> None:
    assert {"BLD", "SER", "PLS", "UR", "STL"} <= set(_names("specimen_type"))
    assert {"TAB", "CAP", "INJ", "SOL"} <= set(_names("dosage_form"))
    assert {"PO", "IV", "IM", "SC"} <= set(_names("route"))
    assert {"OPR", "ADM", "PRG", "DIS"} <= set(_names("document_type"))
    assert {"N", "H", "L", "HH", "LL", "A"} == set(_names("abnormal_flag"))
    nationality = _names("nationality")
    assert nationality["CHN"] == "中国"
    assert len(nationality) >= 26
    assert all(len(c) == 3 and c.isupper() for c in nationality)


def test_frequency_per_day() -> None:
    freq = codes.value_domain("frequency")
    per_day = {code: float(e.extra["per_day"]) for code, e in freq.items()}
    assert per_day["QD"] == 1
    assert per_day["BID"] == 2
    assert per_day["TID"] == 3
    assert per_day["QID"] == 4
    assert per_day["Q8H"] == 3
    assert per_day["Q12H"] == 2
    assert per_day["QW"] == pytest.approx(1 / 7, abs=1e-5)
    assert all(v > 0 for v in per_day.values())


def test_department_hierarchy() -> None:
    dept = codes.value_domain("department")
    assert len(dept) >= 45
    assert dept["03"].name_zh == "内科"
    assert dept["03.04"].name_zh == "心血管内科专业"
    assert dept["32.02"].name_zh == "CT诊断专业"
    for code, e in dept.items():
        parent = e.extra["parent"]
        if "." in code:
            assert parent == code.rsplit(".", 1)[0], code
            assert parent in dept, code
            assert "." not in parent
        else:
            assert parent == "", code
            assert len(code) == 2 and code.isdigit(), code


# ---------------------------------------------------------------- regions


def test_region_hierarchy_rules() -> None:
    table = codes.regions()
    assert len(table) >= 250
    for code, r in table.items():
        assert code == r.code and len(code) == 6 and code.isdigit(), code
        if r.level == "province":
            assert r.parent is None and code.endswith("0000"), code
        elif r.level == "city":
            assert r.parent is not None and table[r.parent].level == "province", code
            assert code[:2] == r.parent[:2] and code.endswith("00") and code[2:4] != "00"
        else:
            assert r.level == "district", code
            assert r.parent is not None and table[r.parent].level == "city", code
            assert code[:4] == r.parent[:4] and code[4:] != "00", code


def test_all_provinces_present() -> None:
    table = codes.regions()
    provinces = {c: r.name_zh for c, r in table.items() if r.level == "province"}
    assert provinces == PROVINCES


def test_every_province_has_a_city_with_districts() -> None:
    table = codes.regions()
    for prov in PROVINCES:
        cities = [c for c, r in table.items() if r.parent == prov]
        assert cities, prov
        districts = [c for c, r in table.items() if r.parent in cities]
        assert len(districts) >= 3, prov


def test_fujian_cities_and_fuzhou_counties() -> None:
    table = codes.regions()
    fujian = {c: r.name_zh for c, r in table.items() if r.parent == "350000"}
    assert fujian == FUJIAN_CITIES
    fuzhou = {c: r.name_zh for c, r in table.items() if r.parent == "350100"}
    assert fuzhou == FUZHOU_COUNTIES
    for city in FUJIAN_CITIES:
        assert any(r.parent == city for r in table.values()), city


def test_superseded_fujian_codes_are_absent() -> None:
    table = codes.regions()
    # 梅列区/三元区 merged (2021), 沙县→沙县区, 长泰县→长泰区, 龙海市→龙海区, 长乐市→长乐区
    for old in ("350402", "350403", "350427", "350625", "350681", "350182"):
        assert old not in table, old


def test_region_path() -> None:
    path = codes.region_path("350102")
    assert [r.name_zh for r in path] == ["福建省", "福州市", "鼓楼区"]


def test_published_id_example_region_exists() -> None:
    example = "11010519491231002X"
    assert ric.is_valid(example)
    region = codes.regions()[example[:6]]
    assert region.name_zh == "朝阳区"
    assert [r.code for r in codes.region_path(region.code)] == ["110000", "110100", "110105"]


def _id_number(area: str, birth: str, seq: str = "123") -> str:
    body = f"{area}{birth}{seq}"
    return body + _gb11643_check(body)


def test_generated_id_numbers_validate() -> None:
    table = codes.regions()
    for area in ("350102", "350181", "110105", "650102"):
        assert table[area].level == "district"
        number = _id_number(area, "19950317")
        assert ric.validate(number) == number
    # the check character computed here agrees with the published example
    assert _gb11643_check("11010519491231002") == "X"


def test_every_district_is_a_currently_assigned_code() -> None:
    # stdnum.cn.ric checks the area code against the GB/T 2260 history for the birth year,
    # so a number of someone born recently is accepted only if the code is current.
    rejected = [
        code
        for code, r in codes.regions().items()
        if r.level == "district" and not ric.is_valid(_id_number(code, "20240101"))
    ]
    assert rejected == []


def test_area_code_must_exist_at_birth_year() -> None:
    # 长乐区 (350112) replaced 长乐市 in 2017: older birth years are rejected by stdnum,
    # which generators of ID numbers must take into account.
    assert ric.is_valid(_id_number("350112", "20180101"))
    assert not ric.is_valid(_id_number("350112", "19800101"))
