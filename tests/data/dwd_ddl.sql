CREATE SCHEMA IF NOT EXISTS dwd;

CREATE TABLE IF NOT EXISTS dwd."person" (
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "name" VARCHAR NOT NULL CHECK (length("name") <= 50),
    "sex_code" VARCHAR NOT NULL CHECK (length("sex_code") = 1),
    "birth_date" DATE,
    "id_doc_type_code" VARCHAR CHECK (length("id_doc_type_code") = 2),
    "id_doc_no" VARCHAR CHECK (length("id_doc_no") <= 18),
    "nationality_code" VARCHAR CHECK (length("nationality_code") = 3),
    "ethnicity_code" VARCHAR CHECK (length("ethnicity_code") = 2),
    "marital_status_code" VARCHAR CHECK (length("marital_status_code") = 2),
    "phone" VARCHAR CHECK (length("phone") <= 20),
    "address_province" VARCHAR CHECK (length("address_province") <= 70),
    "address_city" VARCHAR CHECK (length("address_city") <= 70),
    "address_county" VARCHAR CHECK (length("address_county") <= 70),
    "address_township" VARCHAR CHECK (length("address_township") <= 70),
    "address_street" VARCHAR CHECK (length("address_street") <= 70),
    "address_house_no" VARCHAR CHECK (length("address_house_no") <= 70),
    "postal_code" VARCHAR CHECK (length("postal_code") = 6),
    "address_text" VARCHAR CHECK (length("address_text") <= 200),
    "residence_region_code" VARCHAR CHECK (length("residence_region_code") = 6),
    "registered_at" TIMESTAMP,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("person_id")
);

COMMENT ON TABLE dwd."person" IS '个人基本信息：区域内每人一行（EMPI 主记录） [E0201 个人基本信息]';

COMMENT ON COLUMN dwd."person"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00]';

COMMENT ON COLUMN dwd."person"."name" IS '姓名 / Name [DE02.01.039.00]';

COMMENT ON COLUMN dwd."person"."sex_code" IS '性别代码 / Sex code [DE02.01.040.00]';

COMMENT ON COLUMN dwd."person"."birth_date" IS '出生日期 / Date of birth [DE02.01.005.01]';

COMMENT ON COLUMN dwd."person"."id_doc_type_code" IS '身份证件类别代码 / Identity document type code [DE02.01.031.00]';

COMMENT ON COLUMN dwd."person"."id_doc_no" IS '身份证件号码 / Identity document number [DE02.01.030.00]';

COMMENT ON COLUMN dwd."person"."nationality_code" IS '国籍代码 / Nationality code [DE02.01.015.00]';

COMMENT ON COLUMN dwd."person"."ethnicity_code" IS '民族 / Ethnic group code [DE02.01.025.00]';

COMMENT ON COLUMN dwd."person"."marital_status_code" IS '婚姻状况代码 / Marital status code [DE02.01.018.00]';

COMMENT ON COLUMN dwd."person"."phone" IS '电话号码 / Telephone number [DE02.01.010.00]';

COMMENT ON COLUMN dwd."person"."address_province" IS '地址-省（自治区、直辖市） / Address - province [DE02.01.009.01]';

COMMENT ON COLUMN dwd."person"."address_city" IS '地址-市（地区、州） / Address - city [DE02.01.009.02]';

COMMENT ON COLUMN dwd."person"."address_county" IS '地址-县（区） / Address - county or district [DE02.01.009.03]';

COMMENT ON COLUMN dwd."person"."address_township" IS '地址-乡（镇、街道办事处） / Address - township or subdistrict [DE02.01.009.04]';

COMMENT ON COLUMN dwd."person"."address_street" IS '地址-村（街、路、里、弄等） / Address - village or street [DE02.01.009.05]';

COMMENT ON COLUMN dwd."person"."address_house_no" IS '地址-门牌号码 / Address - house number [DE02.01.009.06]';

COMMENT ON COLUMN dwd."person"."postal_code" IS '邮政编码 / Postal code [DE02.01.047.00]';

COMMENT ON COLUMN dwd."person"."address_text" IS '地址（全文） / Address (full text) [DE99.01.003.00]';

COMMENT ON COLUMN dwd."person"."residence_region_code" IS '现住址行政区划代码 / Residence region code [DE99.01.004.00]';

COMMENT ON COLUMN dwd."person"."registered_at" IS '建档日期时间 / Registered at [DE99.01.005.00]';

COMMENT ON COLUMN dwd."person"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."person"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."person"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."person"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."person"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."person"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."person"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."person"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."institution" (
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "institution_name" VARCHAR NOT NULL CHECK (length("institution_name") <= 70),
    "credit_code" VARCHAR CHECK (length("credit_code") = 18),
    "licence_no" VARCHAR CHECK (length("licence_no") <= 30),
    "category" VARCHAR CHECK (length("category") <= 50),
    "hospital_level" VARCHAR CHECK (length("hospital_level") = 1),
    "region_code" VARCHAR CHECK (length("region_code") = 6),
    "address" VARCHAR CHECK (length("address") <= 200),
    "approved_beds" INTEGER,
    "telephone" VARCHAR CHECK (length("telephone") <= 20),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("institution_code")
);

COMMENT ON TABLE dwd."institution" IS '医疗卫生机构：每机构一行（主数据） [E0101 机构基本信息]';

COMMENT ON COLUMN dwd."institution"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."institution"."institution_name" IS '医疗机构名称 / Institution name [DE08.10.013.00]';

COMMENT ON COLUMN dwd."institution"."credit_code" IS '统一社会信用代码 / Unified social credit code [DE99.02.001.00]';

COMMENT ON COLUMN dwd."institution"."licence_no" IS '医疗机构执业许可证登记号 / Practice licence number [DE99.02.002.00]';

COMMENT ON COLUMN dwd."institution"."category" IS '医疗机构类别 / Institution category [DE99.02.003.00]';

COMMENT ON COLUMN dwd."institution"."hospital_level" IS '医院等级 / Hospital level [DE99.02.004.00]';

COMMENT ON COLUMN dwd."institution"."region_code" IS '机构所在地行政区划代码 / Institution region code [DE99.02.005.00]';

COMMENT ON COLUMN dwd."institution"."address" IS '机构地址 / Institution address [DE99.02.006.00]';

COMMENT ON COLUMN dwd."institution"."approved_beds" IS '核定床位数 / Approved beds [DE99.02.007.00]';

COMMENT ON COLUMN dwd."institution"."telephone" IS '机构联系电话 / Institution telephone [DE99.02.008.00]';

COMMENT ON COLUMN dwd."institution"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."institution"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."institution"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."institution"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."institution"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."institution"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."institution"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."institution"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."department" (
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "department_code" VARCHAR NOT NULL CHECK (length("department_code") <= 20),
    "department_name" VARCHAR NOT NULL CHECK (length("department_name") <= 50),
    "standard_department_code" VARCHAR CHECK (length("standard_department_code") <= 5),
    "department_kind" VARCHAR CHECK (length("department_kind") = 1),
    "open_beds" INTEGER,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("institution_code", "department_code")
);

COMMENT ON TABLE dwd."department" IS '科室：每机构每科室一行，映射到标准诊疗科目 [E0102 科室]';

COMMENT ON COLUMN dwd."department"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."department"."department_code" IS '科室本地代码 / Local department code [DE99.03.001.00]';

COMMENT ON COLUMN dwd."department"."department_name" IS '科室名称 / Department name [DE08.10.026.00]';

COMMENT ON COLUMN dwd."department"."standard_department_code" IS '诊疗科目代码 / Standard department code [DE99.03.002.00]';

COMMENT ON COLUMN dwd."department"."department_kind" IS '科室类型 / Department kind [DE99.03.003.00]';

COMMENT ON COLUMN dwd."department"."open_beds" IS '实际开放床位数 / Open beds [DE99.03.004.00]';

COMMENT ON COLUMN dwd."department"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."department"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."department"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."department"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."department"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."department"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."department"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."department"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."staff" (
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "staff_code" VARCHAR NOT NULL CHECK (length("staff_code") <= 20),
    "name" VARCHAR NOT NULL CHECK (length("name") <= 50),
    "sex_code" VARCHAR CHECK (length("sex_code") = 1),
    "department_code" VARCHAR CHECK (length("department_code") <= 20),
    "professional_title" VARCHAR CHECK (length("professional_title") <= 20),
    "staff_category" VARCHAR CHECK (length("staff_category") <= 20),
    "certificate_no" VARCHAR CHECK (length("certificate_no") <= 30),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("institution_code", "staff_code")
);

COMMENT ON TABLE dwd."staff" IS '医务人员：每机构每工号一行 [E0301 医务人员基本信息]';

COMMENT ON COLUMN dwd."staff"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."staff"."staff_code" IS '医务人员本地工号 / Staff local identifier [DE99.04.001.00]';

COMMENT ON COLUMN dwd."staff"."name" IS '姓名 / Name [DE02.01.039.00]';

COMMENT ON COLUMN dwd."staff"."sex_code" IS '性别代码 / Sex code [DE02.01.040.00]';

COMMENT ON COLUMN dwd."staff"."department_code" IS '科室本地代码 / Local department code [DE99.03.001.00]';

COMMENT ON COLUMN dwd."staff"."professional_title" IS '专业技术职务 / Professional title [DE99.04.002.00]';

COMMENT ON COLUMN dwd."staff"."staff_category" IS '医务人员类别 / Staff category [DE99.04.003.00]';

COMMENT ON COLUMN dwd."staff"."certificate_no" IS '执业证书编码 / Practising certificate number [DE99.04.004.00]';

COMMENT ON COLUMN dwd."staff"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."staff"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."staff"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."staff"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."staff"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."staff"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."staff"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."staff"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."visit" (
    "visit_id" VARCHAR NOT NULL CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "local_patient_id" VARCHAR CHECK (length("local_patient_id") <= 32),
    "visit_type_code" VARCHAR NOT NULL CHECK (length("visit_type_code") = 1),
    "outpatient_no" VARCHAR CHECK (length("outpatient_no") <= 18),
    "inpatient_no" VARCHAR CHECK (length("inpatient_no") <= 18),
    "medical_record_no" VARCHAR CHECK (length("medical_record_no") <= 18),
    "department_code" VARCHAR CHECK (length("department_code") <= 20),
    "standard_department_code" VARCHAR CHECK (length("standard_department_code") <= 5),
    "doctor_staff_code" VARCHAR CHECK (length("doctor_staff_code") <= 20),
    "visit_at" TIMESTAMP NOT NULL,
    "admitted_at" TIMESTAMP,
    "discharged_at" TIMESTAMP,
    "discharge_disposition_code" VARCHAR CHECK (length("discharge_disposition_code") = 1),
    "chief_complaint" VARCHAR CHECK (length("chief_complaint") <= 200),
    "bed_no" VARCHAR CHECK (length("bed_no") <= 10),
    "length_of_stay_days" INTEGER,
    "age_years" INTEGER,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("visit_id")
);

COMMENT ON TABLE dwd."visit" IS '就诊：一次门急诊就诊或一次住院 [A0101 就诊]';

COMMENT ON COLUMN dwd."visit"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00]';

COMMENT ON COLUMN dwd."visit"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."visit"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."visit"."local_patient_id" IS '患者本地标识 / Local patient identifier [DE99.01.002.00]';

COMMENT ON COLUMN dwd."visit"."visit_type_code" IS '就诊类型代码 / Visit type code [DE99.05.002.00]';

COMMENT ON COLUMN dwd."visit"."outpatient_no" IS '门（急）诊号 / Outpatient visit number [DE01.00.010.00]';

COMMENT ON COLUMN dwd."visit"."inpatient_no" IS '住院号 / Inpatient number [DE01.00.014.00]';

COMMENT ON COLUMN dwd."visit"."medical_record_no" IS '病案号 / Medical record number [DE01.00.004.00]';

COMMENT ON COLUMN dwd."visit"."department_code" IS '科室本地代码 / Local department code [DE99.03.001.00]';

COMMENT ON COLUMN dwd."visit"."standard_department_code" IS '诊疗科目代码 / Standard department code [DE99.03.002.00]';

COMMENT ON COLUMN dwd."visit"."doctor_staff_code" IS '医务人员本地工号 / Staff local identifier [DE99.04.001.00]';

COMMENT ON COLUMN dwd."visit"."visit_at" IS '就诊日期时间 / Visit date and time [DE99.05.003.00]';

COMMENT ON COLUMN dwd."visit"."admitted_at" IS '入院日期时间 / Admission date and time [DE06.00.092.00]';

COMMENT ON COLUMN dwd."visit"."discharged_at" IS '出院日期时间 / Discharge date and time [DE06.00.017.00]';

COMMENT ON COLUMN dwd."visit"."discharge_disposition_code" IS '离院方式 / Discharge disposition [DE06.00.223.00]';

COMMENT ON COLUMN dwd."visit"."chief_complaint" IS '主诉 / Chief complaint [DE99.05.004.00]';

COMMENT ON COLUMN dwd."visit"."bed_no" IS '床号 / Bed number [DE99.05.005.00]';

COMMENT ON COLUMN dwd."visit"."length_of_stay_days" IS '实际住院天数 / Length of stay [DE99.05.006.00]';

COMMENT ON COLUMN dwd."visit"."age_years" IS '年龄（岁） / Age in years [DE02.01.026.00]';

COMMENT ON COLUMN dwd."visit"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."visit"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."visit"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."visit"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."visit"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."visit"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."visit"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."visit"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."diagnosis" (
    "diagnosis_id" VARCHAR NOT NULL CHECK (length("diagnosis_id") <= 160),
    "visit_id" VARCHAR NOT NULL CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "diagnosis_code" VARCHAR CHECK (length("diagnosis_code") <= 11),
    "diagnosis_name" VARCHAR CHECK (length("diagnosis_name") <= 100),
    "local_diagnosis_code" VARCHAR CHECK (length("local_diagnosis_code") <= 20),
    "diagnosis_rank" VARCHAR CHECK (length("diagnosis_rank") = 1),
    "diagnosis_stage" VARCHAR CHECK (length("diagnosis_stage") = 1),
    "diagnosed_at" TIMESTAMP,
    "chronic_flag" BOOLEAN,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("diagnosis_id")
);

COMMENT ON TABLE dwd."diagnosis" IS '诊断：就诊中作出的一条疾病诊断 [A0102 诊断]';

COMMENT ON COLUMN dwd."diagnosis"."diagnosis_id" IS '诊断记录标识 / Diagnosis record identifier [DE99.06.001.00]';

COMMENT ON COLUMN dwd."diagnosis"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."diagnosis"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."diagnosis"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."diagnosis"."diagnosis_code" IS '疾病诊断编码 / Diagnosis code [DE05.01.024.00]';

COMMENT ON COLUMN dwd."diagnosis"."diagnosis_name" IS '疾病诊断名称 / Diagnosis name [DE05.01.025.00]';

COMMENT ON COLUMN dwd."diagnosis"."local_diagnosis_code" IS '诊断本地编码 / Local diagnosis code [DE99.06.002.00]';

COMMENT ON COLUMN dwd."diagnosis"."diagnosis_rank" IS '诊断类别 / Diagnosis rank [DE99.06.003.00]';

COMMENT ON COLUMN dwd."diagnosis"."diagnosis_stage" IS '诊断环节 / Diagnosis stage [DE99.06.004.00]';

COMMENT ON COLUMN dwd."diagnosis"."diagnosed_at" IS '诊断日期时间 / Diagnosis date and time [DE99.06.005.00]';

COMMENT ON COLUMN dwd."diagnosis"."chronic_flag" IS '慢性病标志 / Chronic condition flag [DE99.06.006.00]';

COMMENT ON COLUMN dwd."diagnosis"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."diagnosis"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."diagnosis"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."diagnosis"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."diagnosis"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."diagnosis"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."diagnosis"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."diagnosis"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."order" (
    "order_id" VARCHAR NOT NULL CHECK (length("order_id") <= 160),
    "visit_id" VARCHAR NOT NULL CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "order_category" VARCHAR CHECK (length("order_category") <= 20),
    "order_item_code" VARCHAR CHECK (length("order_item_code") <= 30),
    "order_content" VARCHAR NOT NULL CHECK (length("order_content") <= 500),
    "ordered_at" TIMESTAMP NOT NULL,
    "executed_at" TIMESTAMP,
    "stopped_at" TIMESTAMP,
    "order_status_code" VARCHAR CHECK (length("order_status_code") = 1),
    "duration_kind" VARCHAR CHECK (length("duration_kind") = 1),
    "department_code" VARCHAR CHECK (length("department_code") <= 20),
    "ordering_staff_code" VARCHAR CHECK (length("ordering_staff_code") <= 20),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("order_id")
);

COMMENT ON TABLE dwd."order" IS '医嘱：药品、检验、检查、治疗和护理医嘱 [A0103 医嘱]';

COMMENT ON COLUMN dwd."order"."order_id" IS '医嘱标识 / Order identifier [DE99.07.001.00]';

COMMENT ON COLUMN dwd."order"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."order"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."order"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."order"."order_category" IS '医嘱项目类型 / Order category [DE99.07.002.00]';

COMMENT ON COLUMN dwd."order"."order_item_code" IS '医嘱项目代码 / Order item code [DE99.07.003.00]';

COMMENT ON COLUMN dwd."order"."order_content" IS '医嘱内容 / Order content [DE06.00.287.00]';

COMMENT ON COLUMN dwd."order"."ordered_at" IS '医嘱开立日期时间 / Order placed at [DE06.00.220.00]';

COMMENT ON COLUMN dwd."order"."executed_at" IS '医嘱执行日期时间 / Order executed at [DE06.00.222.00]';

COMMENT ON COLUMN dwd."order"."stopped_at" IS '医嘱停止日期时间 / Order stopped at [DE99.07.004.00]';

COMMENT ON COLUMN dwd."order"."order_status_code" IS '医嘱状态代码 / Order status code [DE99.07.005.00]';

COMMENT ON COLUMN dwd."order"."duration_kind" IS '医嘱期效 / Order duration kind [DE99.07.006.00]';

COMMENT ON COLUMN dwd."order"."department_code" IS '科室本地代码 / Local department code [DE99.03.001.00]';

COMMENT ON COLUMN dwd."order"."ordering_staff_code" IS '医务人员本地工号 / Staff local identifier [DE99.04.001.00]';

COMMENT ON COLUMN dwd."order"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."order"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."order"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."order"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."order"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."order"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."order"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."order"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."medication" (
    "medication_id" VARCHAR NOT NULL CHECK (length("medication_id") <= 160),
    "visit_id" VARCHAR NOT NULL CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "order_id" VARCHAR CHECK (length("order_id") <= 160),
    "prescription_no" VARCHAR CHECK (length("prescription_no") <= 30),
    "drug_code" VARCHAR CHECK (length("drug_code") <= 20),
    "drug_name" VARCHAR NOT NULL CHECK (length("drug_name") <= 50),
    "dosage_form_code" VARCHAR CHECK (length("dosage_form_code") <= 4),
    "strength" VARCHAR CHECK (length("strength") <= 50),
    "single_dose" DECIMAL(10,3),
    "dose_unit" VARCHAR CHECK (length("dose_unit") <= 10),
    "frequency_code" VARCHAR CHECK (length("frequency_code") <= 10),
    "route_code" VARCHAR CHECK (length("route_code") <= 4),
    "days_supply" INTEGER,
    "quantity_dispensed" DECIMAL(10,2),
    "prescribed_at" TIMESTAMP NOT NULL,
    "prescriber_staff_code" VARCHAR CHECK (length("prescriber_staff_code") <= 20),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("medication_id")
);

COMMENT ON TABLE dwd."medication" IS '用药：一条处方或用药记录 [A0104 用药]';

COMMENT ON COLUMN dwd."medication"."medication_id" IS '用药记录标识 / Medication record identifier [DE99.08.001.00]';

COMMENT ON COLUMN dwd."medication"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."medication"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."medication"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."medication"."order_id" IS '医嘱标识 / Order identifier [DE99.07.001.00] → order.order_id';

COMMENT ON COLUMN dwd."medication"."prescription_no" IS '处方编号 / Prescription number [DE99.08.002.00]';

COMMENT ON COLUMN dwd."medication"."drug_code" IS '药品代码 / Drug code [DE99.08.003.00]';

COMMENT ON COLUMN dwd."medication"."drug_name" IS '药物名称 / Drug name [DE08.50.022.00]';

COMMENT ON COLUMN dwd."medication"."dosage_form_code" IS '药物剂型代码 / Dosage form code [DE08.50.011.00]';

COMMENT ON COLUMN dwd."medication"."strength" IS '药物规格 / Drug strength [DE99.08.004.00]';

COMMENT ON COLUMN dwd."medication"."single_dose" IS '药物使用次剂量 / Single dose [DE99.08.005.00]';

COMMENT ON COLUMN dwd."medication"."dose_unit" IS '药物使用剂量单位 / Dose unit [DE99.08.006.00]';

COMMENT ON COLUMN dwd."medication"."frequency_code" IS '药物使用频率 / Dosing frequency [DE06.00.133.00]';

COMMENT ON COLUMN dwd."medication"."route_code" IS '药物使用途径代码 / Route code [DE06.00.134.00]';

COMMENT ON COLUMN dwd."medication"."days_supply" IS '用药天数 / Days of supply [DE99.08.007.00]';

COMMENT ON COLUMN dwd."medication"."quantity_dispensed" IS '发药数量 / Quantity dispensed [DE99.08.008.00]';

COMMENT ON COLUMN dwd."medication"."prescribed_at" IS '处方开立日期时间 / Prescribed at [DE99.08.009.00]';

COMMENT ON COLUMN dwd."medication"."prescriber_staff_code" IS '医务人员本地工号 / Staff local identifier [DE99.04.001.00]';

COMMENT ON COLUMN dwd."medication"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."medication"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."medication"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."medication"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."medication"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."medication"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."medication"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."medication"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."lab_report" (
    "lab_report_id" VARCHAR NOT NULL CHECK (length("lab_report_id") <= 160),
    "visit_id" VARCHAR CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "order_id" VARCHAR CHECK (length("order_id") <= 160),
    "request_no" VARCHAR CHECK (length("request_no") <= 30),
    "panel_code" VARCHAR CHECK (length("panel_code") <= 20),
    "panel_name" VARCHAR CHECK (length("panel_name") <= 50),
    "specimen_type_code" VARCHAR CHECK (length("specimen_type_code") <= 4),
    "specimen_no" VARCHAR CHECK (length("specimen_no") <= 30),
    "requested_at" TIMESTAMP,
    "collected_at" TIMESTAMP,
    "received_at" TIMESTAMP,
    "reported_at" TIMESTAMP NOT NULL,
    "report_status" VARCHAR CHECK (length("report_status") = 1),
    "mutual_recognition_flag" BOOLEAN,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("lab_report_id")
);

COMMENT ON TABLE dwd."lab_report" IS '检验报告：一次检验申请的标本、时间节点和报告 [A0401 检验报告]';

COMMENT ON COLUMN dwd."lab_report"."lab_report_id" IS '检验报告标识 / Lab report identifier [DE99.09.001.00]';

COMMENT ON COLUMN dwd."lab_report"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."lab_report"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."lab_report"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."lab_report"."order_id" IS '医嘱标识 / Order identifier [DE99.07.001.00] → order.order_id';

COMMENT ON COLUMN dwd."lab_report"."request_no" IS '检验申请单号 / Lab request number [DE99.09.002.00]';

COMMENT ON COLUMN dwd."lab_report"."panel_code" IS '检验组套代码 / Lab panel code [DE99.09.003.00]';

COMMENT ON COLUMN dwd."lab_report"."panel_name" IS '检验组套名称 / Lab panel name [DE99.09.004.00]';

COMMENT ON COLUMN dwd."lab_report"."specimen_type_code" IS '标本类型代码 / Specimen type code [DE99.09.005.00]';

COMMENT ON COLUMN dwd."lab_report"."specimen_no" IS '标本编号 / Specimen number [DE99.09.006.00]';

COMMENT ON COLUMN dwd."lab_report"."requested_at" IS '检验申请日期时间 / Lab requested at [DE99.09.007.00]';

COMMENT ON COLUMN dwd."lab_report"."collected_at" IS '标本采集日期时间 / Specimen collected at [DE99.09.008.00]';

COMMENT ON COLUMN dwd."lab_report"."received_at" IS '标本接收日期时间 / Specimen received at [DE99.09.009.00]';

COMMENT ON COLUMN dwd."lab_report"."reported_at" IS '检验报告日期时间 / Lab reported at [DE99.09.010.00]';

COMMENT ON COLUMN dwd."lab_report"."report_status" IS '报告状态代码 / Report status [DE99.00.007.00]';

COMMENT ON COLUMN dwd."lab_report"."mutual_recognition_flag" IS '结果互认标志 / Mutual recognition flag [DE99.09.011.00]';

COMMENT ON COLUMN dwd."lab_report"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."lab_report"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."lab_report"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."lab_report"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."lab_report"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."lab_report"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."lab_report"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."lab_report"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."lab_result" (
    "lab_result_id" VARCHAR NOT NULL CHECK (length("lab_result_id") <= 160),
    "lab_report_id" VARCHAR NOT NULL CHECK (length("lab_report_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "item_code" VARCHAR CHECK (length("item_code") <= 20),
    "item_name" VARCHAR NOT NULL CHECK (length("item_name") <= 50),
    "loinc_code" VARCHAR CHECK (length("loinc_code") <= 10),
    "value_numeric" DECIMAL(14,4),
    "value_text" VARCHAR CHECK (length("value_text") <= 50),
    "unit" VARCHAR CHECK (length("unit") <= 20),
    "value_as_sent" VARCHAR CHECK (length("value_as_sent") <= 50),
    "unit_as_sent" VARCHAR CHECK (length("unit_as_sent") <= 20),
    "reference_range" VARCHAR CHECK (length("reference_range") <= 50),
    "reference_low" DECIMAL(14,4),
    "reference_high" DECIMAL(14,4),
    "abnormal_flag" VARCHAR CHECK (length("abnormal_flag") <= 2),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("lab_result_id")
);

COMMENT ON TABLE dwd."lab_result" IS '检验结果：检验报告中的一个项目结果 [A0402 检验结果]';

COMMENT ON COLUMN dwd."lab_result"."lab_result_id" IS '检验结果标识 / Lab result identifier [DE99.10.001.00]';

COMMENT ON COLUMN dwd."lab_result"."lab_report_id" IS '检验报告标识 / Lab report identifier [DE99.09.001.00] → lab_report.lab_report_id';

COMMENT ON COLUMN dwd."lab_result"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."lab_result"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."lab_result"."item_code" IS '检验项目代码 / Lab item code [DE99.10.002.00]';

COMMENT ON COLUMN dwd."lab_result"."item_name" IS '检验项目名称 / Lab item name [DE99.10.003.00]';

COMMENT ON COLUMN dwd."lab_result"."loinc_code" IS 'LOINC 代码 / LOINC code [DE99.10.004.00]';

COMMENT ON COLUMN dwd."lab_result"."value_numeric" IS '检验结果数值 / Numeric result [DE99.10.005.00]';

COMMENT ON COLUMN dwd."lab_result"."value_text" IS '检验结果文本 / Text result [DE99.10.006.00]';

COMMENT ON COLUMN dwd."lab_result"."unit" IS '检验结果计量单位 / Result unit [DE99.10.007.00]';

COMMENT ON COLUMN dwd."lab_result"."value_as_sent" IS '检验结果原始值 / Result as sent [DE99.10.008.00]';

COMMENT ON COLUMN dwd."lab_result"."unit_as_sent" IS '原始计量单位 / Unit as sent [DE99.10.009.00]';

COMMENT ON COLUMN dwd."lab_result"."reference_range" IS '参考值范围 / Reference range text [DE99.10.010.00]';

COMMENT ON COLUMN dwd."lab_result"."reference_low" IS '参考值下限 / Reference range low [DE99.10.011.00]';

COMMENT ON COLUMN dwd."lab_result"."reference_high" IS '参考值上限 / Reference range high [DE99.10.012.00]';

COMMENT ON COLUMN dwd."lab_result"."abnormal_flag" IS '检验结果异常标识 / Abnormal flag [DE99.10.013.00]';

COMMENT ON COLUMN dwd."lab_result"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."lab_result"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."lab_result"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."lab_result"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."lab_result"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."lab_result"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."lab_result"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."lab_result"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."exam_report" (
    "exam_report_id" VARCHAR NOT NULL CHECK (length("exam_report_id") <= 160),
    "visit_id" VARCHAR CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "order_id" VARCHAR CHECK (length("order_id") <= 160),
    "request_no" VARCHAR CHECK (length("request_no") <= 30),
    "exam_item_code" VARCHAR CHECK (length("exam_item_code") <= 20),
    "exam_item_name" VARCHAR NOT NULL CHECK (length("exam_item_name") <= 50),
    "modality" VARCHAR CHECK (length("modality") <= 4),
    "body_part" VARCHAR CHECK (length("body_part") <= 50),
    "clinical_information" VARCHAR CHECK (length("clinical_information") <= 500),
    "findings" VARCHAR CHECK (length("findings") <= 2000),
    "impression" VARCHAR CHECK (length("impression") <= 1000),
    "abnormal_flag" BOOLEAN,
    "requested_at" TIMESTAMP,
    "reported_at" TIMESTAMP NOT NULL,
    "report_status" VARCHAR CHECK (length("report_status") = 1),
    "mutual_recognition_flag" BOOLEAN,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("exam_report_id")
);

COMMENT ON TABLE dwd."exam_report" IS '检查报告：一次医学影像或其他检查的报告 [A0403 检查报告]';

COMMENT ON COLUMN dwd."exam_report"."exam_report_id" IS '检查报告标识 / Exam report identifier [DE99.11.001.00]';

COMMENT ON COLUMN dwd."exam_report"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."exam_report"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."exam_report"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."exam_report"."order_id" IS '医嘱标识 / Order identifier [DE99.07.001.00] → order.order_id';

COMMENT ON COLUMN dwd."exam_report"."request_no" IS '检查申请单号 / Exam request number [DE99.11.002.00]';

COMMENT ON COLUMN dwd."exam_report"."exam_item_code" IS '检查项目代码 / Exam item code [DE99.11.003.00]';

COMMENT ON COLUMN dwd."exam_report"."exam_item_name" IS '检查项目名称 / Exam item name [DE99.11.004.00]';

COMMENT ON COLUMN dwd."exam_report"."modality" IS '检查设备类型 / Modality [DE99.12.004.00]';

COMMENT ON COLUMN dwd."exam_report"."body_part" IS '检查部位 / Body part [DE99.12.005.00]';

COMMENT ON COLUMN dwd."exam_report"."clinical_information" IS '检查临床信息 / Clinical information [DE99.11.005.00]';

COMMENT ON COLUMN dwd."exam_report"."findings" IS '检查报告结果-客观所见 / Findings [DE04.50.131.00]';

COMMENT ON COLUMN dwd."exam_report"."impression" IS '检查报告结果-主观提示 / Impression [DE04.50.132.00]';

COMMENT ON COLUMN dwd."exam_report"."abnormal_flag" IS '检查结果异常标志 / Exam abnormal flag [DE99.11.006.00]';

COMMENT ON COLUMN dwd."exam_report"."requested_at" IS '检查申请日期时间 / Exam requested at [DE99.11.007.00]';

COMMENT ON COLUMN dwd."exam_report"."reported_at" IS '检查报告日期时间 / Exam reported at [DE99.11.008.00]';

COMMENT ON COLUMN dwd."exam_report"."report_status" IS '报告状态代码 / Report status [DE99.00.007.00]';

COMMENT ON COLUMN dwd."exam_report"."mutual_recognition_flag" IS '结果互认标志 / Mutual recognition flag [DE99.09.011.00]';

COMMENT ON COLUMN dwd."exam_report"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."exam_report"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."exam_report"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."exam_report"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."exam_report"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."exam_report"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."exam_report"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."exam_report"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."imaging_study" (
    "imaging_study_id" VARCHAR NOT NULL CHECK (length("imaging_study_id") <= 160),
    "exam_report_id" VARCHAR CHECK (length("exam_report_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "study_instance_uid" VARCHAR NOT NULL CHECK (length("study_instance_uid") <= 64),
    "accession_no" VARCHAR CHECK (length("accession_no") <= 16),
    "modality" VARCHAR CHECK (length("modality") <= 4),
    "body_part" VARCHAR CHECK (length("body_part") <= 50),
    "study_at" TIMESTAMP,
    "study_description" VARCHAR CHECK (length("study_description") <= 200),
    "series_count" INTEGER,
    "instance_count" INTEGER,
    "storage_url" VARCHAR CHECK (length("storage_url") <= 500),
    "data_size" BIGINT,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("imaging_study_id")
);

COMMENT ON TABLE dwd."imaging_study" IS '影像检查：一次 DICOM 检查（study），影像以 URL 引用 [A0404 影像检查]';

COMMENT ON COLUMN dwd."imaging_study"."imaging_study_id" IS '影像检查标识 / Imaging study identifier [DE99.12.001.00]';

COMMENT ON COLUMN dwd."imaging_study"."exam_report_id" IS '检查报告标识 / Exam report identifier [DE99.11.001.00] → exam_report.exam_report_id';

COMMENT ON COLUMN dwd."imaging_study"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."imaging_study"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."imaging_study"."study_instance_uid" IS '检查实例 UID / Study instance UID [DE99.12.002.00]';

COMMENT ON COLUMN dwd."imaging_study"."accession_no" IS '检查号 / Accession number [DE99.12.003.00]';

COMMENT ON COLUMN dwd."imaging_study"."modality" IS '检查设备类型 / Modality [DE99.12.004.00]';

COMMENT ON COLUMN dwd."imaging_study"."body_part" IS '检查部位 / Body part [DE99.12.005.00]';

COMMENT ON COLUMN dwd."imaging_study"."study_at" IS '影像检查日期时间 / Study date and time [DE99.12.006.00]';

COMMENT ON COLUMN dwd."imaging_study"."study_description" IS '影像检查描述 / Study description [DE99.12.007.00]';

COMMENT ON COLUMN dwd."imaging_study"."series_count" IS '序列数 / Number of series [DE99.12.008.00]';

COMMENT ON COLUMN dwd."imaging_study"."instance_count" IS '图像数 / Number of instances [DE99.12.009.00]';

COMMENT ON COLUMN dwd."imaging_study"."storage_url" IS '影像存储地址 / Image storage URL [DE99.12.010.00]';

COMMENT ON COLUMN dwd."imaging_study"."data_size" IS '影像数据量 / Image data size [DE99.12.011.00]';

COMMENT ON COLUMN dwd."imaging_study"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."imaging_study"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."imaging_study"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."imaging_study"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."imaging_study"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."imaging_study"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."imaging_study"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."imaging_study"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."clinical_document" (
    "document_id" VARCHAR NOT NULL CHECK (length("document_id") <= 160),
    "visit_id" VARCHAR CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "document_type_code" VARCHAR NOT NULL CHECK (length("document_type_code") <= 4),
    "title" VARCHAR CHECK (length("title") <= 100),
    "content" VARCHAR CHECK (length("content") <= 100000),
    "created_at" TIMESTAMP NOT NULL,
    "storage_url" VARCHAR CHECK (length("storage_url") <= 500),
    "author_staff_code" VARCHAR CHECK (length("author_staff_code") <= 20),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("document_id")
);

COMMENT ON TABLE dwd."clinical_document" IS '病历文书：门诊病历、入院记录、病程记录、出院小结等 [A0106 病历文书]';

COMMENT ON COLUMN dwd."clinical_document"."document_id" IS '病历文书标识 / Clinical document identifier [DE99.13.001.00]';

COMMENT ON COLUMN dwd."clinical_document"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."clinical_document"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."clinical_document"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."clinical_document"."document_type_code" IS '病历文书类型代码 / Document type code [DE99.13.002.00]';

COMMENT ON COLUMN dwd."clinical_document"."title" IS '病历文书标题 / Document title [DE99.13.003.00]';

COMMENT ON COLUMN dwd."clinical_document"."content" IS '病历文书内容 / Document content [DE99.13.004.00]';

COMMENT ON COLUMN dwd."clinical_document"."created_at" IS '文书创建日期时间 / Document created at [DE99.13.005.00]';

COMMENT ON COLUMN dwd."clinical_document"."storage_url" IS '文书存储地址 / Document storage URL [DE99.13.006.00]';

COMMENT ON COLUMN dwd."clinical_document"."author_staff_code" IS '医务人员本地工号 / Staff local identifier [DE99.04.001.00]';

COMMENT ON COLUMN dwd."clinical_document"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."clinical_document"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."clinical_document"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."clinical_document"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."clinical_document"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."clinical_document"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."clinical_document"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."clinical_document"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."charge" (
    "charge_id" VARCHAR NOT NULL CHECK (length("charge_id") <= 160),
    "visit_id" VARCHAR NOT NULL CHECK (length("visit_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "institution_code" VARCHAR NOT NULL CHECK (length("institution_code") <= 22),
    "order_id" VARCHAR CHECK (length("order_id") <= 160),
    "charge_category" VARCHAR CHECK (length("charge_category") <= 20),
    "item_code" VARCHAR CHECK (length("item_code") <= 30),
    "item_name" VARCHAR NOT NULL CHECK (length("item_name") <= 100),
    "quantity" DECIMAL(10,2),
    "unit_price" DECIMAL(12,4),
    "amount" DECIMAL(12,2) NOT NULL,
    "charged_at" TIMESTAMP NOT NULL,
    "refund_flag" BOOLEAN,
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("charge_id")
);

COMMENT ON TABLE dwd."charge" IS '费用：就诊产生的一条收费明细 [A0105 费用]';

COMMENT ON COLUMN dwd."charge"."charge_id" IS '费用明细标识 / Charge identifier [DE99.14.001.00]';

COMMENT ON COLUMN dwd."charge"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."charge"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."charge"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."charge"."order_id" IS '医嘱标识 / Order identifier [DE99.07.001.00] → order.order_id';

COMMENT ON COLUMN dwd."charge"."charge_category" IS '收费项目类别 / Charge category [DE99.14.002.00]';

COMMENT ON COLUMN dwd."charge"."item_code" IS '收费项目代码 / Charge item code [DE99.14.003.00]';

COMMENT ON COLUMN dwd."charge"."item_name" IS '收费项目名称 / Charge item name [DE99.14.004.00]';

COMMENT ON COLUMN dwd."charge"."quantity" IS '收费数量 / Charge quantity [DE99.14.005.00]';

COMMENT ON COLUMN dwd."charge"."unit_price" IS '收费单价 / Unit price [DE99.14.006.00]';

COMMENT ON COLUMN dwd."charge"."amount" IS '收费金额 / Amount [DE99.14.007.00]';

COMMENT ON COLUMN dwd."charge"."charged_at" IS '收费日期时间 / Charged at [DE99.14.008.00]';

COMMENT ON COLUMN dwd."charge"."refund_flag" IS '退费标志 / Refund flag [DE99.14.009.00]';

COMMENT ON COLUMN dwd."charge"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."charge"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."charge"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."charge"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."charge"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."charge"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."charge"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."charge"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';

CREATE TABLE IF NOT EXISTS dwd."vital_sign" (
    "vital_sign_id" VARCHAR NOT NULL CHECK (length("vital_sign_id") <= 160),
    "person_id" VARCHAR NOT NULL CHECK (length("person_id") <= 160),
    "visit_id" VARCHAR CHECK (length("visit_id") <= 160),
    "institution_code" VARCHAR CHECK (length("institution_code") <= 22),
    "measured_at" TIMESTAMP NOT NULL,
    "systolic_bp" INTEGER,
    "diastolic_bp" INTEGER,
    "body_temperature" DECIMAL(4,1),
    "pulse_rate" INTEGER,
    "respiratory_rate" INTEGER,
    "body_height" DECIMAL(5,1),
    "body_weight" DECIMAL(5,1),
    "heart_rate" INTEGER,
    "oxygen_saturation" INTEGER,
    "bmi" DECIMAL(4,1),
    "capillary_glucose" DECIMAL(4,1),
    "measurement_source" VARCHAR CHECK (length("measurement_source") = 1),
    "device_id" VARCHAR CHECK (length("device_id") <= 64),
    "_source_hospital" VARCHAR NOT NULL CHECK (length("_source_hospital") <= 22),
    "_source_system" VARCHAR NOT NULL CHECK (length("_source_system") <= 4),
    "_source_table" VARCHAR NOT NULL CHECK (length("_source_table") <= 64),
    "_source_key" VARCHAR NOT NULL CHECK (length("_source_key") <= 64),
    "_source_updated_at" TIMESTAMP,
    "_batch_id" VARCHAR NOT NULL CHECK (length("_batch_id") <= 64),
    "_ods_content_hash" VARCHAR NOT NULL CHECK (length("_ods_content_hash") = 64),
    "_mapping_version" VARCHAR NOT NULL CHECK (length("_mapping_version") <= 32),
    PRIMARY KEY ("vital_sign_id")
);

COMMENT ON TABLE dwd."vital_sign" IS '生命体征：一次测量，含设备和物联网上传 [E0202 生命体征]';

COMMENT ON COLUMN dwd."vital_sign"."vital_sign_id" IS '生命体征记录标识 / Vital sign record identifier [DE99.15.001.00]';

COMMENT ON COLUMN dwd."vital_sign"."person_id" IS '区域患者标识 / Regional person identifier [DE99.01.001.00] → person.person_id';

COMMENT ON COLUMN dwd."vital_sign"."visit_id" IS '区域就诊标识 / Regional visit identifier [DE99.05.001.00] → visit.visit_id';

COMMENT ON COLUMN dwd."vital_sign"."institution_code" IS '医疗机构代码 / Institution code [DE99.00.001.00] → institution.institution_code';

COMMENT ON COLUMN dwd."vital_sign"."measured_at" IS '测量日期时间 / Measured at [DE99.15.002.00]';

COMMENT ON COLUMN dwd."vital_sign"."systolic_bp" IS '收缩压 / Systolic blood pressure [DE04.10.174.00]';

COMMENT ON COLUMN dwd."vital_sign"."diastolic_bp" IS '舒张压 / Diastolic blood pressure [DE04.10.176.00]';

COMMENT ON COLUMN dwd."vital_sign"."body_temperature" IS '体温 / Body temperature [DE04.10.186.00]';

COMMENT ON COLUMN dwd."vital_sign"."pulse_rate" IS '脉率 / Pulse rate [DE04.10.118.00]';

COMMENT ON COLUMN dwd."vital_sign"."respiratory_rate" IS '呼吸频率 / Respiratory rate [DE04.10.081.00]';

COMMENT ON COLUMN dwd."vital_sign"."body_height" IS '身高 / Body height [DE04.10.167.00]';

COMMENT ON COLUMN dwd."vital_sign"."body_weight" IS '体重 / Body weight [DE04.10.188.00]';

COMMENT ON COLUMN dwd."vital_sign"."heart_rate" IS '心率 / Heart rate [DE99.15.003.00]';

COMMENT ON COLUMN dwd."vital_sign"."oxygen_saturation" IS '血氧饱和度 / Oxygen saturation [DE99.15.004.00]';

COMMENT ON COLUMN dwd."vital_sign"."bmi" IS '体质指数 / Body mass index [DE99.15.005.00]';

COMMENT ON COLUMN dwd."vital_sign"."capillary_glucose" IS '末梢血糖 / Capillary glucose [DE99.15.006.00]';

COMMENT ON COLUMN dwd."vital_sign"."measurement_source" IS '测量方式 / Measurement source [DE99.15.007.00]';

COMMENT ON COLUMN dwd."vital_sign"."device_id" IS '测量设备标识 / Device identifier [DE99.15.008.00]';

COMMENT ON COLUMN dwd."vital_sign"."_source_hospital" IS '医疗机构代码 / Institution code [DE99.00.001.00]';

COMMENT ON COLUMN dwd."vital_sign"."_source_system" IS '源系统代码 / Source system [DE99.00.002.00]';

COMMENT ON COLUMN dwd."vital_sign"."_source_table" IS '源表名 / Source table [DE99.00.008.00]';

COMMENT ON COLUMN dwd."vital_sign"."_source_key" IS '源记录本地主键 / Source local key [DE99.00.003.00]';

COMMENT ON COLUMN dwd."vital_sign"."_source_updated_at" IS '源记录更新日期时间 / Source updated at [DE99.00.004.00]';

COMMENT ON COLUMN dwd."vital_sign"."_batch_id" IS '数据批次标识 / Batch identifier [DE99.00.005.00]';

COMMENT ON COLUMN dwd."vital_sign"."_ods_content_hash" IS '记录内容哈希 / Content hash [DE99.00.006.00]';

COMMENT ON COLUMN dwd."vital_sign"."_mapping_version" IS '映射版本 / Mapping version [DE99.00.009.00]';
